"""How a request appears in the logs: the access line of every request, and the name a request
goes by in any line about it.

Tornado's own access line and exception logs name a request by its full URI; an admin view's
query may hold the admin token (``?token=``), so a handler that says ``log_query = False`` is
named by its path alone. Only Tornado's documented hooks are used: the application's
``log_function`` and ``RequestHandler.log_exception``.
"""

from __future__ import annotations

import logging

import tornado.web
import tornado.websocket
from tornado.log import access_log

HTTP_SWITCHING_PROTOCOLS = 101
HTTP_BAD_REQUEST = 400
HTTP_SERVER_ERROR = 500
HTTP_SERVICE_UNAVAILABLE = 503


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access-log line (the application's ``log_function``), but at DEBUG for two
    answers of the Engine.IO handler that come once per device at the start of the hour: a
    WebSocket's 101, which its connect line says too, and a 503 past --max-connections, counted
    in /metrics and summed up in one WARNING per interval (protocol/admission.py)."""
    status = handler.get_status()
    if isinstance(handler, tornado.websocket.WebSocketHandler) and status in (
        HTTP_SWITCHING_PROTOCOLS, HTTP_SERVICE_UNAVAILABLE
    ):
        level = logging.DEBUG
    elif status < HTTP_BAD_REQUEST:
        level = logging.INFO
    elif status < HTTP_SERVER_ERROR:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):
        access_log.log(level, "%d %s %.2fms", status, request_summary(handler),
                       1000.0 * handler.request.request_time())


def request_summary(handler: tornado.web.RequestHandler) -> str:
    """``METHOD target (client address)``, the target without its query where the handler's
    ``log_query`` is False."""
    request = handler.request
    target = request.uri if getattr(handler, "log_query", True) else request.path
    return f"{request.method} {target} ({request.remote_ip})"
