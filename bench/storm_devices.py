"""One load process of bench/storm.py: --count devices, each a raw WebSocket client written on
asyncio's Protocol (no client library, no task once joined), so that the server is what is
measured.

Each device connects from its own source address of 127.<net>.y.z (so that no port range or
TIME_WAIT left by an earlier run limits it), speaks WebSocket, Engine.IO and Socket.IO by hand:
    GET /socket.io/?EIO=4&transport=websocket (Upgrade)  ->  101, then 0{...}
    40                                                   ->  40{"sid":...}
    421["join_lesson",{...}]                             ->  431[{"status":"SUCCESS","data":{}}]
    2 (PING)                                             ->  3 (PONG), for as long as it holds
Frames are masked with the zero key (RFC 6455 wants a key; any key is valid), so sending costs
no XOR. At most --in-flight devices are between their connect and their ack at once.

Output, one JSON line each: once every device has joined or failed (`joined`, with each
device's sid and its connect-to-ack time), then after --hold seconds (`held`, with the devices
dropped meanwhile). It then waits for a line on stdin (the driver measures the server while
the devices are still connected) and closes them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import uvloop
from load_idle import join_payload

SUCCESS_ACK = '431[{"status":"SUCCESS","data":{}}]'
JOIN_PREFIX = '421["join_lesson",'
ZERO_MASK = b"\0\0\0\0"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
HTTP_SWITCHING = b"HTTP/1.1 101"
HTTP_UNAVAILABLE = b"HTTP/1.1 503"
HEADER_END = b"\r\n\r\n"
#: source addresses per third octet (.1 to .250)
HOSTS_PER_OCTET = 250
FAILURE_EXAMPLES = 5


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (zero key) carrying `payload`."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + ZERO_MASK + payload


PONG_FRAME = client_frame(OP_TEXT, b"3")
CONNECT_FRAME = client_frame(OP_TEXT, b"40")


class Run:
    """What the devices of this process saw."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.settled = 0
        self.all_settled = asyncio.Event()
        self.joined: dict[int, tuple[str, float]] = {}  # k -> (sid, connect-to-ack seconds)
        self.refused: list[float] = []  # seconds from connect to the 503
        self.failures: list[str] = []
        self.dropped = 0
        self.pongs = 0
        self.last_ack = 0.0
        self.closing = False

    def settle(self) -> None:
        self.settled += 1
        if self.settled == self.count:
            self.all_settled.set()


class Device(asyncio.Protocol):
    """One device: handshake, CONNECT, one join, then PONG for every PING."""

    __slots__ = ("buffer", "done", "k", "payload", "request", "run", "sid", "started",
                 "transport", "upgraded")

    def __init__(self, k: int, run: Run, request: bytes, payload: str, done: asyncio.Future,
                 started: float) -> None:
        self.k = k
        self.run = run
        self.request = request
        self.payload = payload
        self.done = done
        self.started = started
        self.buffer = b""
        self.upgraded = False
        self.sid = ""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(HEADER_END)
            if end < 0:
                self.buffer = buffer
                return
            status = buffer[:12]
            if status == HTTP_UNAVAILABLE:
                self.run.refused.append(time.perf_counter() - self.started)
                self._finish(None)
                return
            if status != HTTP_SWITCHING:
                self._finish(f"HTTP {buffer[:40]!r}")
                return
            self.upgraded = True
            buffer = buffer[end + 4:]
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            size = buffer[1] & 0x7F
            start = 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                break
            payload, buffer = buffer[start:start + size], buffer[start + size:]
            self._frame(opcode, payload)
        self.buffer = buffer

    def _frame(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if opcode == OP_TEXT:
            if payload == b"2":
                transport.write(PONG_FRAME)
                self.run.pongs += 1
            elif payload.startswith(b"0{"):
                transport.write(CONNECT_FRAME)
            elif payload.startswith(b"40{"):
                self.sid = json.loads(payload[2:])["sid"]
                join = f"{JOIN_PREFIX}{self.payload}]".encode()
                transport.write(client_frame(OP_TEXT, join))
            elif payload.startswith(b"431"):
                if payload.decode() == SUCCESS_ACK:
                    now = time.perf_counter()
                    self.run.joined[self.k] = (self.sid, now - self.started)
                    self.run.last_ack = time.time()
                    self._finish(None, keep=True)
                else:
                    self._finish(f"ack {payload[:120]!r}")
        elif opcode == OP_PING:
            transport.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            transport.close()

    def _finish(self, failure: str | None, keep: bool = False) -> None:
        if failure is not None:
            self.run.failures.append(f"{self.k}: {failure}")
        if not keep and self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)
            self.run.settle()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._finish(f"connection lost before the ack ({exc})")
        elif self.k in self.run.joined and not self.run.closing:
            self.run.dropped += 1


def source_address(net: int, index: int) -> str:
    """The device's own loopback address: 127.<net>.y.z, z from 1 to 250."""
    return f"127.{net}.{index // HOSTS_PER_OCTET + 1}.{index % HOSTS_PER_OCTET + 1}"


async def device(k: int, index: int, args: argparse.Namespace, run: Run, request: bytes,
                 payload: str, gate: asyncio.Semaphore, devices: list[Device]) -> None:
    loop = asyncio.get_running_loop()
    async with gate:
        done = loop.create_future()
        started = time.perf_counter()
        transport = None
        try:
            async with asyncio.timeout(args.timeout):
                transport, protocol = await loop.create_connection(
                    lambda: Device(k, run, request, payload, done, started), args.host,
                    args.port, local_addr=(source_address(args.net, index), 0))
                devices.append(protocol)
                await done
        except (OSError, TimeoutError) as error:
            if transport is not None:
                transport.close()
            # the timeout cancelled `done` itself: cancelled is not settled
            if done.cancelled() or not done.done():
                run.failures.append(f"{k}: {type(error).__name__} {error}")
                if not done.done():
                    done.set_result(None)
                run.settle()


async def main(args: argparse.Namespace) -> None:
    exp = int(time.time()) + 3600
    payloads = [join_payload(args.first + i, args.lessons, args.students, exp)
                for i in range(args.count)]
    request = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
               f"Host: {args.host}:{args.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: c3Rvcm0tZGV2aWNlLWtleQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"\r\n").encode()
    run = Run(args.count)
    gate = asyncio.Semaphore(args.in_flight)
    devices: list[Device] = []
    started = time.time()
    tasks = [asyncio.create_task(device(args.first + i, i, args, run, request, payloads[i],
                                        gate, devices))
             for i in range(args.count)]
    del payloads
    await run.all_settled.wait()
    await asyncio.gather(*tasks)
    del tasks
    report({"phase": "joined", "count": args.count, "joined": len(run.joined),
            "refused": len(run.refused), "failures": len(run.failures),
            "failure_examples": run.failures[:FAILURE_EXAMPLES], "started": started,
            "last_ack": run.last_ack,
            "ack_ms": [round(seconds * 1000, 1) for _sid, seconds in run.joined.values()],
            "refused_ms": [round(seconds * 1000, 1) for seconds in run.refused],
            "sids": {str(k): sid for k, (sid, _seconds) in run.joined.items()}})
    await asyncio.sleep(args.hold)
    report({"phase": "held", "dropped": run.dropped, "pongs": run.pongs})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    run.closing = True
    for each in devices:
        if each.transport is not None:
            each.transport.close()


def report(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--first", type=int, default=0, help="number of the first device")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--net", type=int, required=True, help="second octet of the source addresses")
    p.add_argument("--in-flight", type=int, default=500)
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for connect + join")
    p.add_argument("--lessons", type=int, required=True)
    p.add_argument("--students", type=int, required=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
