"""How external calls fail: worth retrying (maybe after a delay the server named) or not."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


# What a partner's error code looks like (OMS003, INVALID_DATA, 429): short, no spaces, no @.
ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
# A code that opens a free-text message ("LeadRejected: ...", "E1042: ..."): it must look made for
# machines, with a digit, an underscore or an inner capital, so that a name ("Ana: ...") is not taken.
LEADING_CODE = re.compile(r"([A-Za-z0-9_.-]{1,40}):")
MACHINE_MADE = re.compile(r"[0-9_]|[a-z][A-Z]")
# A phone number, a CPF or CNPJ, a card number: seven digits or more without a letter is a customer's
# value a partner echoed, never a code (codes such as 429, 1042 or OMS003 are shorter, or have letters).
PERSONAL_NUMBER = re.compile(r"^[^A-Za-z]*(?:\d[^A-Za-z\d]*){7,}$")
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


def describe(response: httpx.Response) -> str:
    """A partner's answer as error messages carry it: status, the partner's error code, size and type.

    Never the body itself: partners echo what they were sent (names, e-mails, documents, phones), and
    these messages reach workflow histories and logs. The error code (VTEX's ``OMS003``, Zoho's
    ``INVALID_DATA``) is what support looks up; the request is in the activity's input.
    """
    code = error_code(response)
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return (
        f"HTTP {response.status_code}"
        + (f" {code}" if code else "")
        + f" ({len(response.content)} bytes of {kind})"
    )


def error_code(response: httpx.Response) -> str:
    """The machine-readable error code of a JSON error body, if it has one that looks like a code."""
    try:
        body = response.json()
    except ValueError:
        return ""
    candidates = []
    if isinstance(body, dict):
        error = body.get("error")
        candidates = [error.get("code") if isinstance(error, dict) else error, body.get("code")]
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):  # Zoho: per-record results
            candidates.append(data[0].get("code"))
    return next(filter(None, map(as_code, candidates)), "")


def as_code(value: object) -> str:
    """``value`` when it looks like an error code (:data:`ERROR_CODE`), else ``""``: partners' fields
    meant for codes can hold sentences, and sentences can hold customer data."""
    text = str(value) if isinstance(value, str | int) else ""
    if ERROR_CODE.fullmatch(text) and not PERSONAL_NUMBER.match(text):
        return text
    return ""


def leading_code(message: str) -> str:
    """The code a free-text message opens with (``"LeadRejected: ..."`` gives ``LeadRejected``), or ``""``.

    The rest of the message is never kept: partners write what they were sent into it.
    """
    match = LEADING_CODE.match(message.strip())
    if match is None or not MACHINE_MADE.search(match.group(1)) or PERSONAL_NUMBER.match(match.group(1)):
        return ""
    return match.group(1)


@contextmanager
def readable_body(service: str, response: httpx.Response, what: str) -> Iterator[None]:
    """Read a partner's success answer within this: one in a shape the hub does not know (not JSON, a
    list for an object, a field missing) is a PermanentError naming ``what``, so its step parks where
    support sees it, instead of a ValueError or KeyError retried for ever."""
    try:
        yield
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        message = f"unexpected {what} ({type(error).__name__}): {describe(response)}"
        raise PermanentError(service, message, response.status_code) from None


def json_object(service: str, response: httpx.Response, what: str) -> dict[str, Any]:
    """A success answer's JSON object; PermanentError (see :func:`readable_body`) for anything else."""
    with readable_body(service, response, what):
        body = response.json()
        if not isinstance(body, dict):
            raise TypeError(f"a JSON {type(body).__name__}, not an object")
    return body


def raise_for_status(service: str, response: httpx.Response) -> None:
    """Raise a Transient or Permanent error for a non-2xx response."""
    if response.is_success:
        return
    message = describe(response)
    if response.status_code in TRANSIENT_STATUS:
        raise TransientError(service, message, response.status_code, retry_after_seconds(response))
    raise PermanentError(service, message, response.status_code)
