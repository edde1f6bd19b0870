"""The deployment of docs/operations.md: nginx (sticky with ip_hash) in front of two rollcall
processes sharing the message queue; clients over polling, WebSocket and polling upgraded to
WebSocket through the proxy, with a browser's Origin, and clients straight on each process."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.integration.node.client import NodeClient
from tests.integration.scaleout.test_relay import node_join
from tests.support import free_port
from tests.support.joins import EVENT_TIMEOUT, LESSON
from tests.support.scaleout import Listener, in_process, queue_config, subprocess_server

NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
READY_LINE = b"start worker process"

# The /socket.io/ location of docs/operations.md; Host carries the port here ($http_host), since
# the test listens on a port of its own (behind 443, $host is the same thing).
CONFIG = """
{user}
worker_processes 1;
error_log stderr notice;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream rollcall {{
        ip_hash;
        {servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        proxy_http_version 1.1;
        location /socket.io/ {{
            proxy_pass http://rollcall;
            proxy_set_header Host              $http_host;
            proxy_set_header X-Real-IP         $remote_addr;
            proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade           $http_upgrade;
            proxy_set_header Connection        $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
        }}
    }}
}}
"""


@asynccontextmanager
async def nginx(directory: pathlib.Path, upstreams: list[str]) -> AsyncIterator[str]:
    """nginx in the foreground with a configuration of its own; yields its URL."""
    assert NGINX is not None, "nginx is not installed: run scripts/bootstrap.sh test"
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "",
            dir=directory,
            port=port,
            servers="\n".join(f"server {upstream};" for upstream in upstreams),
        )
    )
    proc = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(directory), "-c", str(conf), "-g", "daemon off;",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[bytes] = []
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(EVENT_TIMEOUT):
            async for line in proc.stderr:
                lines.append(line)
                if READY_LINE in line:
                    break
            else:
                raise AssertionError(b"".join(lines).decode())
        drain = asyncio.ensure_future(proc.stderr.read())
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    await drain


@pytest.mark.gen_test(timeout=60)
async def test_emits_reach_clients_through_sticky_nginx_and_on_each_process(
    config, services, redis_url, secret, lesson, write_only, tmp_path
):
    config = queue_config(config, redis_url)
    node = await NodeClient.start()
    async with (
        in_process(config, services) as (url_a, a),
        subprocess_server(config) as (url_b, _),
        nginx(tmp_path, [url_a.removeprefix("http://"), url_b.removeprefix("http://")]) as proxy,
    ):
        proxied = [Listener(proxy, transport) for transport in ("polling", "websocket")]
        direct = [Listener(url_a, "websocket"), Listener(url_b, "polling")]
        clients = proxied + direct
        try:
            for client in proxied:
                await client.connect(headers={"Origin": proxy})  # the same-origin check passes
            for client in direct:
                await client.connect()
            for n, client in enumerate(clients):
                await client.join_as(f"c{n}", secret)
            await node_join(node, proxy, "node", secret, transports=["polling", "websocket"])
            await node.expect("upgrade")  # every request of the session reached one process

            await write_only.emit("lesson_started", {"lesson_id": LESSON}, room=LESSON)
            await a.sio.emit("from_a", None, room=LESSON)
            for client in clients:
                # A's own sockets get its emit before the one that went through Redis
                received = [await client.next(), await client.next()]
                assert sorted(received) == [
                    ("from_a", []),
                    ("lesson_started", [{"lesson_id": LESSON}]),
                ]
            await node.expect("event", name="lesson_started")
            await node.expect("event", name="from_a")
        finally:
            await node.close()
            for client in clients:
                await client.close()
