"""Prometheus metrics of the webhook API: ingestion volume, outcomes and acknowledgement latency.

Labels come from fixed sets (the webhook routes and three outcomes), never from the request, so
unauthenticated callers cannot grow them.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import Series

WEBHOOKS = Counter(
    "hub_webhooks_total",
    "Webhooks answered, by source and outcome: accepted (2xx), rejected (4xx), unavailable (5xx).",
    ["source", "outcome"],
)
ACK_SECONDS = Histogram(
    "hub_webhook_ack_seconds",
    "Time from receiving a webhook to answering it.",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
IN_FLIGHT = Gauge(
    "hub_webhooks_in_flight",
    "Webhook events being handed to Temporal right now (per API process).",
    multiprocess_mode="livesum",
)
UNKNOWN_SOURCE = "other"  # any path under /webhooks/ that is not a webhook route
OUTCOMES = ("accepted", "rejected", "unavailable", "error")


def webhook_series(sources: list[str]) -> list[Series]:
    """Every source's series, to start at zero (``core.metrics.start_at_zero``)."""
    return [
        *((ACK_SECONDS, (source,)) for source in sources),
        *((WEBHOOKS, (source, outcome)) for source in sources for outcome in OUTCOMES),
    ]


def outcome_of(status_code: int) -> str:
    if status_code < 300:
        return "accepted"
    if status_code < 500:
        return "rejected"
    return "unavailable" if status_code == 503 else "error"  # 500: a bug in the hub


REPORT_HANDOVERS = Counter(
    "hub_dealer_report_handovers_total",
    "Dealers' status reports handed to their lead's run after the answer, or by the sweep: handed_on; "
    "failed (Temporal did not take it, or the database did not record it), error (a bug, logged) or "
    "deferred (too many under way): the sweep tries again.",
    ["way", "result"],
)


class WebhookMetrics:
    """Counts and times the answer to every request under ``prefix`` (the webhooks), by route.

    ``sources`` maps each webhook route's path template to its label: a dealer's webhook has the dealer
    and lead in its path, and labels stay a fixed set (unknown paths share one). Plain ASGI: the request
    runs in its own task as before, with no second task, stream and event per request as a
    ``BaseHTTPMiddleware`` adds. The answer is counted when its last byte is sent, so what a route
    does after answering (a background hand-over) is not in the acknowledgement time.
    """

    def __init__(self, app: ASGIApp, prefix: str, sources: dict[str, str]) -> None:
        self.app = app
        self.prefix = prefix
        self.sources = sources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500
        answered = False

        async def send_counted(message: Message) -> None:
            nonlocal status_code, answered
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
                self.count(scope, started, status_code)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            # A bug no handler answered: the server's 500 is written outside this middleware, so it is
            # counted here, or the HubWebhookErrors alert would never hear of it.
            if not answered:
                self.count(scope, started, 500)
            raise

    def count(self, scope: Scope, started: float, status_code: int) -> None:
        route = scope.get("route")  # set by the router on the request's scope once a route matched
        path = route.path if isinstance(route, Route) else None
        source = self.sources.get(path, UNKNOWN_SOURCE) if path else UNKNOWN_SOURCE
        ACK_SECONDS.labels(source).observe(time.perf_counter() - started)
        WEBHOOKS.labels(source, outcome_of(status_code)).inc()
