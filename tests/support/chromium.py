"""A headless Chromium driven over the DevTools protocol, with Tornado's WebSocket client.

Enough of CDP for a page test: open a tab, navigate and wait for the load, evaluate JavaScript
(awaiting its promise). No test dependency beyond Debian's `chromium` package.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import pathlib
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

from tornado.websocket import WebSocketClientConnection, websocket_connect

EXECUTABLE = "chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # the suite runs as root in CI
    "--disable-gpu",
    "--hide-scrollbars",  # a page taller than the window is still as wide as the window
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0


class BrowserError(Exception):
    """Chromium did not start, or a DevTools command failed."""


class Browser:
    """One Chromium process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process, ws: WebSocketClientConnection) -> None:
        self._process = process
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[tuple[str | None, str], asyncio.Queue[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())
        assert process.stderr is not None
        self._stderr = asyncio.ensure_future(_drain(process.stderr))

    @classmethod
    async def launch(cls, profile: pathlib.Path) -> Browser:
        if shutil.which(EXECUTABLE) is None:
            raise BrowserError("chromium is not installed: run scripts/bootstrap.sh test")
        process = await asyncio.create_subprocess_exec(
            EXECUTABLE, *FLAGS, f"--user-data-dir={profile}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT):
                endpoint = await _devtools_endpoint(process)
            ws = await websocket_connect(endpoint, max_message_size=64 * 1024 * 1024)
        except BaseException:
            process.kill()
            await process.wait()
            raise
        return cls(process, ws)

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None) -> dict[str, Any]:
        """Run one DevTools command and return its result."""
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        reply = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        await self._ws.write_message(json.dumps(message))
        async with asyncio.timeout(COMMAND_TIMEOUT):
            answer = await reply
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer["result"]

    def events(self, method: str, session: str | None) -> asyncio.Queue[dict[str, Any]]:
        """The queue of `method` events of `session`, buffered from the first call on."""
        return self._events.setdefault((session, method), asyncio.Queue())

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        return page

    async def _read(self) -> None:
        while (raw := await self._ws.read_message()) is not None:
            message = json.loads(raw)
            if "id" in message:
                reply = self._pending.pop(message["id"], None)
                if reply is not None and not reply.done():
                    reply.set_result(message)
            else:
                self.events(message["method"], message.get("sessionId")).put_nowait(message)
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(BrowserError("DevTools connection closed"))

    async def close(self) -> None:
        """Ask Chromium to exit, and kill it if it does not in time."""
        with contextlib.suppress(BrowserError, TimeoutError):
            await self.send("Browser.close")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._process.wait()
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        self._ws.close()
        for task in (self._reader, self._stderr):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _devtools_endpoint(process: asyncio.subprocess.Process) -> str:
    """The browser's DevTools WebSocket URL, which Chromium prints on stderr once listening."""
    assert process.stderr is not None
    seen = []
    while line := await process.stderr.readline():
        text = line.decode(errors="replace")
        if match := LISTENING.search(text):
            return match[1]
        seen.append(text)
    raise BrowserError("chromium exited before listening:\n" + "".join(seen[-20:]))


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading Chromium's stderr so that it never blocks on a full pipe."""
    while await stream.readline():
        pass


class Page:
    """A tab, attached in flat mode: its commands carry its session id."""

    def __init__(self, browser: Browser, session: str) -> None:
        self._browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._browser.send(method, params, self.session)

    async def navigate(self, url: str) -> None:
        """Open `url` and wait for its load event (after any redirects)."""
        loaded = self._browser.events("Page.loadEventFired", self.session)
        while not loaded.empty():
            loaded.get_nowait()
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        async with asyncio.timeout(COMMAND_TIMEOUT):
            await loaded.get()

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression, its promise awaited."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
        })
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description", str(details)))
        return result["result"].get("value")

    async def wait_for_text(self, text: str, timeout_ms: int) -> str:
        """The page's visible text once it contains `text`."""
        return await self.wait_for(
            f"document.body && document.body.innerText.includes({json.dumps(text)})",
            "document.body ? document.body.innerText : ''",
            timeout_ms,
        )

    async def wait_for(self, condition: str, shown: str, timeout_ms: int) -> Any:
        """The value of the expression `shown` once the expression `condition` holds: a
        MutationObserver in the page checks it after every change, so nothing polls. On timeout
        the error says what `shown` was."""
        return await self.evaluate(f"""new Promise((resolve, reject) => {{
            const holds = () => {condition};
            const shown = () => {shown};
            if (holds()) return resolve(shown());
            const timer = setTimeout(() => {{
                observer.disconnect();
                reject(new Error("timed out waiting for " + {json.dumps(condition)}
                                 + "; the page shows: " + JSON.stringify(shown())));
            }}, {timeout_ms});
            const observer = new MutationObserver(() => {{
                if (holds()) {{
                    observer.disconnect(); clearTimeout(timer); resolve(shown());
                }}
            }});
            observer.observe(document, {{
                subtree: true, childList: true, characterData: true, attributes: true,
            }});
        }})""")

    async def set_viewport(self, width: int, height: int, scale: float = 1) -> None:
        """Lay the page out as on a screen of `width` x `height` CSS pixels (a phone, a desktop)."""
        await self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": scale, "mobile": width < 600,
        })

    async def screenshot(self, path: pathlib.Path, full_page: bool = False) -> None:
        """Save what the tab shows as a PNG (kept next to a failing test's output); `full_page`
        takes the whole page, beyond the viewport."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": size["width"],
                              "height": size["height"], "scale": 1}
        data = await self.send("Page.captureScreenshot", params)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))


@contextlib.asynccontextmanager
async def browser(profile: pathlib.Path) -> AsyncIterator[Browser]:
    """A launched Chromium, always closed afterwards."""
    launched = await Browser.launch(profile)
    try:
        yield launched
    finally:
        await launched.close()
