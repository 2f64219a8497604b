"""CloudEvents envelopes: the shape of every event the system takes in or sends out."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def cloud_event(
    *, event_id: str, event_type: str, source: str, subject: str, time: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope (structured JSON mode)."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": event_type,
        "source": source,
        "subject": subject,
        "time": time.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
