"""The lesson page in a real headless Chromium: a participant joins and the open page shows them
without a reload."""

from __future__ import annotations

import pathlib

import pytest

from tests.operations.chromium import BrowserError, Page, browser
from tests.operations.conftest import ADMIN_TOKEN, Connect, join, participant_token

CLIENT_ID = "client-in-browser"
UPDATE_TIMEOUT_MS = 10_000
LIVE = "live ·"
MARKER = "window.__sameDocument"


async def shown(page: Page, text: str, screenshot: pathlib.Path) -> str:
    """The page's text once it shows `text`; a screenshot of it is kept if it never does."""
    try:
        return await page.wait_for_text(text, UPDATE_TIMEOUT_MS)
    except BrowserError:
        await page.screenshot(screenshot)
        raise


@pytest.mark.gen_test(timeout=90)
async def test_a_participant_who_joins_appears_without_a_reload(
    url: str, lesson: str, connect: Connect, tmp_path: pathlib.Path
) -> None:
    async with browser(tmp_path / "profile") as chromium:
        page = await chromium.new_page()
        await page.navigate(f"{url}/lessons/{lesson}/view?token={ADMIN_TOKEN}")
        before = await shown(page, LIVE, tmp_path / "before.png")
        assert CLIENT_ID not in before
        assert "not joined" in before
        # the token left the address bar and is kept where scripts cannot read it
        assert await page.evaluate("location.pathname + location.search") == (
            f"/lessons/{lesson}/view"
        )
        assert await page.evaluate("document.cookie") == ""
        await page.evaluate(f"{MARKER} = true")

        student = await connect()
        ack = await join(student, user_id="s1", lesson_id=lesson, role="student",
                         access_token=participant_token(CLIENT_ID))
        assert ack["status"] == "SUCCESS"

        after = await shown(page, CLIENT_ID, tmp_path / "after.png")
        assert student.get_sid() in after
        assert "student" in after
        assert await page.evaluate(MARKER) is True, "the page was reloaded"
