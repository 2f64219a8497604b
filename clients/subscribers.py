"""Outbound events to subscribers, signed the Standard Webhooks way."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from clients.errors import raise_for_status
from core.outbound import origin


class EventPublisher:
    """Posts events to a subscriber; the ``webhook-id`` lets receivers drop a retried delivery."""

    def __init__(self, http: httpx.AsyncClient, signing_secret: str) -> None:
        self._http = http
        self._signer = Webhook(signing_secret)

    def signed_request(self, event: dict[str, Any], timestamp: datetime) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one delivery of ``event``."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        headers = {
            "content-type": "application/cloudevents+json",
            "webhook-id": str(event["id"]),
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": self._signer.sign(str(event["id"]), timestamp, body),
        }
        return body.encode(), headers

    async def publish(self, url: str, event: dict[str, Any], timestamp: datetime) -> None:
        """Deliver ``event`` to ``url``; raises a Transient/Permanent error on failure.

        409 Conflict is the subscriber saying it has an event of this id already (a copy sent again after
        an answer that was lost, a redrive): delivered, not refused."""
        body, headers = self.signed_request(event, timestamp)
        response = await self._http.post(url, content=body, headers=headers)
        if response.status_code == httpx.codes.CONFLICT:
            return
        raise_for_status(f"subscriber {origin(url)}", response)  # no tokens: errors reach logs
