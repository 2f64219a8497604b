"""VTEX customers (Master Data CL documents) on their way into bronze: checks, event keys, quarantine.

A document's version is keyed ``<id>@<updatedIn or createdIn>``: Master Data leaves ``updatedIn`` null
until the first update, so a never-updated customer is keyed by its creation. The same version read twice
(the sync re-reads a little before its watermark) has the same key and lands once.

Checks, each counted by the sync under its code:
- ``missing_id``: no document id; quarantined, keyed by a hash of the document.
- ``invalid_date``: neither ``updatedIn`` nor ``createdIn`` reads as a timestamp; quarantined.
- ``invalid_email``: an e-mail that is not an address; quarantined with the reason.
- ``masked_email``: VTEX masks shoppers' e-mails (``<hash>@ct.vtex.com.br``); such a customer lands, and
  silver must not count the address as the customer's (see :func:`is_masked_email`).
- ``no_email``: no e-mail at all; the customer lands.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from core.vtex import change_key, change_time, readable_change_time
from warehouse.landing import BronzeRecord, InvalidRecord, QuarantineRecord
from warehouse.tables import VTEX_CUSTOMERS

SOURCE = "vtex"
MASKED_EMAIL_DOMAIN = "ct.vtex.com.br"
MISSING_ID = "missing_id"
INVALID_EMAIL = "invalid_email"
INVALID_DATE = "invalid_date"
MASKED_EMAIL = "masked_email"
NO_EMAIL = "no_email"


@dataclass(frozen=True)
class CustomerVersion:
    """A customer's bronze record and the data-quality notes that did not stop it landing."""

    record: BronzeRecord
    notes: tuple[str, ...] = ()


def customer_version(document: dict[str, Any]) -> CustomerVersion:
    """The bronze record of one CL document as Master Data served it.

    Raises:
        InvalidRecord: no id, an unreadable ``createdIn``/``updatedIn``, or an e-mail that is not an
            address; ``code`` names the check.
    """
    customer_id = document.get("id")
    changed = document.get("updatedIn") or document.get("createdIn")
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise _invalid(document, None, MISSING_ID, "id: missing")
    try:
        key = f"{customer_id}@{change_key(str(changed))}"
    except ValueError as error:
        raise _invalid(
            document, customer_id, INVALID_DATE, f"updatedIn/createdIn: not a timestamp: {changed!r}"
        ) from error
    email = document.get("email")
    notes: tuple[str, ...] = ()
    if email is None or email == "":
        notes = (NO_EMAIL,)
    elif isinstance(email, str) and is_masked_email(email):
        notes = (MASKED_EMAIL,)  # VTEX's relay address: its local part is VTEX's business, not ours
    elif not isinstance(email, str) or not _is_address(email):
        raise _invalid(document, customer_id, INVALID_EMAIL, "email: not a valid address", key)
    record = BronzeRecord(
        SOURCE, customer_id, key, document, change_time(str(changed)), customer_columns(document)
    )
    return CustomerVersion(record, notes)


def customer_columns(document: dict[str, Any]) -> dict[str, Any]:
    """The typed columns of a CL document (``warehouse.tables.TYPED_COLUMNS``); None where unreadable."""
    user = document.get("userId")
    # The version is keyed by updatedIn: a broken createdIn alone does not stop it.
    created_at = readable_change_time(document.get("createdIn"))
    return {"user_id": None if user is None else str(user), "created_at": created_at}


def is_masked_email(email: str) -> bool:
    """Whether VTEX masked the address: it reaches the shopper through VTEX, it is not the shopper's own."""
    # The characters silver's check trims too (dbt/models/silver/customers.sql): one rule on both sides.
    return email.strip(" \t\r\n").lower().endswith("@" + MASKED_EMAIL_DOMAIN)


def _is_address(email: str) -> bool:
    try:
        validate_email(email, check_deliverability=False)  # syntax only: no DNS from a worker
    except EmailNotValidError:
        return False
    return True


def _invalid(
    document: dict[str, Any], customer_id: str | None, code: str, reason: str, key: str | None = None
) -> InvalidRecord:
    # Without an id or a readable date, only the content tells two broken documents apart.
    event_key = key or f"{customer_id or '?'}@{_content_hash(document)}"
    quarantine = QuarantineRecord(SOURCE, VTEX_CUSTOMERS, event_key, reason, document, customer_id, code)
    return InvalidRecord(reason, quarantine)


def _content_hash(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]
