"""GET /healthz: whether Redis and PostgreSQL answer, for load balancers and orchestrators."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

import tornado.web

log = logging.getLogger(__name__)

HEALTH_PATH = r"/healthz"
# the whole ("status") and each backend
HEALTH_OK = "ok"
HEALTH_UNAVAILABLE = "unavailable"
HEALTH_DOWN = "down"
HTTP_OK = 200
HTTP_SERVICE_UNAVAILABLE = 503


class HealthHandler(tornado.web.RequestHandler):
    """GET /healthz: 200 when Redis and PostgreSQL both answer, 503 naming the one that does not.

    Anyone may ask, so the body says only which backend is down; why (hosts, ports, PostgreSQL's
    authentication message) goes to the log.
    """

    def initialize(self, check: Callable[[], Awaitable[Mapping[str, str | None]]]) -> None:
        self.check = check

    async def get(self) -> None:
        state = await self.check()
        for name, reason in state.items():
            if reason is not None:
                log.warning("/healthz: %s is not answering: %s", name, reason)
        healthy = all(reason is None for reason in state.values())
        body = {
            name: HEALTH_OK if reason is None else HEALTH_DOWN for name, reason in state.items()
        }
        self.set_status(HTTP_OK if healthy else HTTP_SERVICE_UNAVAILABLE)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"status": HEALTH_OK if healthy else HEALTH_UNAVAILABLE, **body}))
