"""How external calls fail: worth retrying (maybe after a delay the server named) or not."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx

# Retrying these can succeed; every other 4xx means the request itself is wrong.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ExternalServiceError(Exception):
    """A call to an external service failed."""

    def __init__(self, service: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status_code = status_code


class TransientError(ExternalServiceError):
    """Worth retrying; ``retry_after`` is the delay in seconds the server asked for, if any."""

    def __init__(
        self, service: str, message: str, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(service, message, status_code)
        self.retry_after = retry_after


class PermanentError(ExternalServiceError):
    """Retrying the same request will fail the same way."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header as seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when: datetime = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def raise_for_status(service: str, response: httpx.Response) -> None:
    """Raise a Transient or Permanent error for a non-2xx response."""
    if response.is_success:
        return
    message = f"HTTP {response.status_code}: {response.text[:300]}"
    if response.status_code in TRANSIENT_STATUS:
        raise TransientError(service, message, response.status_code, retry_after_seconds(response))
    raise PermanentError(service, message, response.status_code)
