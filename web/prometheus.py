"""GET /metrics: the Prometheus exposition of metrics.REGISTRY."""

from __future__ import annotations

import tornado.web
from prometheus_client.exposition import choose_encoder

import metrics


class MetricsHandler(tornado.web.RequestHandler):
    """Serves the text format, or OpenMetrics when the scraper asks for it."""

    def get(self) -> None:
        encoder, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(encoder(metrics.REGISTRY))
