"""Bronze records of the lead flow: each change of the portal database becomes one version, keyed so that
landing the same change again adds nothing.

The payload holds exactly the typed columns: ids, places, models, dealers, times and statuses, and of
deals their stage, amount and owner. The portal and central databases are the systems of record; nothing
personal about a lead (name, e-mail, phone) is in them, nor a deal's name, account or contact.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from warehouse.landing import BronzeRecord
from warehouse.tables import (
    DEAL_STAGE_CHANGES,
    DEALER_FEEDBACK,
    DEALS,
    LEAD_DELIVERIES,
    LEAD_STATUS_CHANGES,
    TYPED_COLUMNS,
)

SOURCE = "portal"
# Each kind of change (db.lead_changes) and the bronze table it lands in.
TABLE_OF_KIND = {
    "status": LEAD_STATUS_CHANGES,
    "feedback": DEALER_FEEDBACK,
    "delivery": LEAD_DELIVERIES,
    "withdrawal": LEAD_DELIVERIES,
    "release": LEAD_DELIVERIES,
    "deal": DEALS,
    "deal_stage": DEAL_STAGE_CHANGES,
}


def lead_record(kind: str, fields: dict[str, Any], recorded_at: datetime) -> BronzeRecord:
    """The bronze version of one change the portal recorded at ``recorded_at``; its event key names the
    version, not the read, so reading it again gives the same key."""
    table = TABLE_OF_KIND[kind]
    columns = {column.name: fields.get(column.name) for column in TYPED_COLUMNS[table]}
    payload = {name: _plain(value) for name, value in columns.items()}
    if table == LEAD_STATUS_CHANGES:
        # One row per (lead, status, dealer) and delivery in the portal: the same status again is the
        # same event; a lead sent back to a dealer reaches it again in a delivery of its own.
        entity_id = str(fields["lead_id"])
        key = f"{entity_id}:{fields['status']}:{fields['dealer_id']}" + _delivery(fields)
        changed = fields["changed_at"]
        if fields.get("again"):  # the same status about no delivery again: the first keeps its key
            key += f"#{changed.isoformat()}"
    elif table == DEALER_FEEDBACK:
        entity_id = str(fields["lead_id"])  # one row per (lead, dealer, status) and delivery
        key = f"{entity_id}:{fields['dealer_id']}:{fields['status']}" + _delivery(fields)
        changed = fields["received_at"]
    elif table == DEALS:
        # A deal's state is named by Zoho's Modified_Time and when the hub stored it: Zoho's record of
        # a second can settle on a later move within it, and a lead link found later changes no time.
        entity_id = str(fields["deal_id"])
        changed = fields["modified_at"]
        key = f"{entity_id}:{changed.isoformat()}@{recorded_at.isoformat()}"
    elif table == DEAL_STAGE_CHANGES:
        # A stage move is named by Zoho's Modified_Time; a second move within the same second (Zoho
        # stamps them alike) by its stage too, the first keeping the key it was always landed with.
        entity_id = str(fields["deal_id"])
        changed = fields["changed_at"]
        key = f"{entity_id}:{changed.isoformat()}" + (
            f":{fields['stage']}" if fields.get("shares_time") else ""
        )
    else:
        # A delivery changes in place (claimed, delivered, reported), then ends (withdrawn, released):
        # each state is a version, named by when the portal recorded it.
        entity_id = f"{fields['lead_id']}/{fields['dealer_id']}"
        key = f"{entity_id}:{kind}:{recorded_at.isoformat()}"
        changed = recorded_at
    return BronzeRecord(
        source=SOURCE,
        entity_id=entity_id,
        event_key=f"{table}:{key}",
        payload=payload,
        source_updated_at=changed,
        columns=columns,
    )


def _delivery(fields: dict[str, Any]) -> str:
    """The key's mark of the delivery a change is about; none on rows from before it was kept (their
    keys stay as they were landed) and on statuses about no delivery."""
    claimed = fields.get("delivery_claimed_at")
    return f"@{claimed.isoformat()}" if claimed else ""


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value
