"""The warehouse's datasets and bronze tables: one definition, created idempotently by ``Warehouse``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from warehouse.libraries import SchemaField

VTEX_ORDERS = "vtex_orders"  # one row per version of an order as the OMS served it
VTEX_ORDER_EVENTS = "vtex_order_events"  # one row per state change VTEX announced (hook or feed)
VTEX_SKUS = "vtex_skus"  # one row per version of a SKU (detail and price) the catalog sync saw change
VTEX_CUSTOMERS = "vtex_customers"  # one row per version of a Master Data CL document (customer)
QUARANTINE = "quarantine"  # records that failed validation, with the reason
# The lead flow's records, from the portal database (ids, places, models, dealers, times, statuses only):
LEAD_STATUS_CHANGES = "lead_status_changes"  # one row per status a lead went through
LEAD_DELIVERIES = "lead_deliveries"  # one row per version of a lead's delivery to one dealer
DEALER_FEEDBACK = "dealer_feedback"  # one row per status a dealer reported for a lead
# ... and the deals that follow, from the central database (no deal name, account or contact):
DEALS = "deals"  # one row per state of a deal the hub made current
DEAL_STAGE_CHANGES = "deal_stage_changes"  # one row per stage a deal went through

# Ingestion metadata every bronze row carries; ``payload`` is the source's JSON, untouched.
BRONZE_SCHEMA = (
    SchemaField("source", "STRING", mode="REQUIRED", description="system the record came from"),
    SchemaField("entity_id", "STRING", mode="REQUIRED", description="the record's id in that system"),
    SchemaField(
        "event_key", "STRING", mode="REQUIRED", description="identifies this version; silver dedups on it"
    ),
    SchemaField("source_updated_at", "TIMESTAMP", description="when the source changed the record"),
    SchemaField("ingested_at", "TIMESTAMP", mode="REQUIRED"),
    SchemaField("payload", "JSON", mode="REQUIRED"),
)

QUARANTINE_SCHEMA = (
    SchemaField("source", "STRING", mode="REQUIRED"),
    SchemaField("entity", "STRING", mode="REQUIRED", description="bronze table the record was meant for"),
    SchemaField("entity_id", "STRING", description="the record's id, when it had one"),
    SchemaField("event_key", "STRING", mode="REQUIRED"),
    SchemaField("reason", "STRING", mode="REQUIRED"),
    SchemaField("quarantined_at", "TIMESTAMP", mode="REQUIRED"),
    SchemaField("payload", "JSON", mode="REQUIRED"),
)

# Typed columns beside the payload: the fields the models need, read once at landing where pydantic
# validates them (times in UTC to the microsecond, money in integer cents), so no SQL parses a time
# string from JSON. Nullable and last, so an installed table gains them in place; rows landed before
# they existed get them from ``python -m warehouse.migrate``.
TYPED_COLUMNS: dict[str, tuple[SchemaField, ...]] = {
    VTEX_ORDERS: (
        SchemaField("status", "STRING", description="status of this version"),
        SchemaField("created_at", "TIMESTAMP", description="creationDate, cut to microseconds"),
        SchemaField("value_cents", "INT64", description="value, in cents"),
        SchemaField("items_cents", "INT64", description='the "Items" total, in cents'),
        SchemaField("discounts_cents", "INT64", description='the "Discounts" total, in cents (negative)'),
        SchemaField("shipping_cents", "INT64", description='the "Shipping" total, in cents'),
        SchemaField("customer_profile_id", "STRING", description="clientProfileData.userProfileId"),
    ),
    VTEX_ORDER_EVENTS: (SchemaField("state", "STRING", description="the state VTEX announced"),),
    VTEX_SKUS: (),
    VTEX_CUSTOMERS: (
        SchemaField("user_id", "STRING", description="userId: the profile id orders carry"),
        SchemaField("created_at", "TIMESTAMP", description="createdIn, cut to microseconds"),
    ),
    LEAD_STATUS_CHANGES: (
        SchemaField("lead_id", "STRING", description="the Zoho lead id"),
        SchemaField("status", "STRING", description="the portal status the lead reached"),
        SchemaField("dealer_id", "STRING", description="the dealer the status concerns; empty: none"),
        SchemaField("changed_at", "TIMESTAMP", description="when the lead reached the status"),
        SchemaField("state", "STRING", description="the lead's state, as routing saw it"),
        SchemaField("city", "STRING", description="the lead's city, as routing saw it"),
        SchemaField("model", "STRING", description="the car model of interest"),
        SchemaField("lead_source", "STRING", description="the lead's channel (Zoho's Lead_Source)"),
    ),
    LEAD_DELIVERIES: (
        SchemaField("lead_id", "STRING", description="the Zoho lead id"),
        SchemaField("dealer_id", "STRING", description="the dealer the lead went to"),
        SchemaField("status", "STRING", description="claimed, delivered or withdrawn"),
        SchemaField("routing_reason", "STRING", description="why routing (or support) chose the dealer"),
        SchemaField("claimed_at", "TIMESTAMP", description="when routing chose the dealer"),
        SchemaField("delivered_at", "TIMESTAMP", description="when the dealer's CRM confirmed the lead"),
        SchemaField("accept_by", "TIMESTAMP", description="the dealer's SLA deadline; null: no SLA"),
        SchemaField("dealer_status", "STRING", description="the newest status the dealer reported"),
        SchemaField("dealer_status_at", "TIMESTAMP", description="when the dealer says that happened"),
        SchemaField("withdrawn_at", "TIMESTAMP", description="when the lead was taken from the dealer"),
        SchemaField("withdrawal_reason", "STRING", description="why it was taken (the SLA passed)"),
        SchemaField("withdrawal_at_crm", "STRING", description="withdrawn, recorded or pending"),
        SchemaField(
            "released_at", "TIMESTAMP", description="when routing or support took it back (not the SLA)"
        ),
    ),
    DEALER_FEEDBACK: (
        SchemaField("lead_id", "STRING", description="the Zoho lead id"),
        SchemaField("dealer_id", "STRING", description="the dealer that reported"),
        SchemaField("status", "STRING", description="accepted, contacted, qualified, lost or sold"),
        SchemaField("reported_at", "TIMESTAMP", description="when the dealer says it happened"),
        SchemaField("received_at", "TIMESTAMP", description="when the hub received the report"),
        SchemaField("outcome", "STRING", description="applied, older or late (the dealer had lost the lead)"),
    ),
    DEALS: (
        SchemaField("deal_id", "STRING", description="the Zoho deal id"),
        SchemaField("lead_id", "STRING", description="the Zoho lead it was converted from; null: none found"),
        SchemaField("stage", "STRING", description="the deal's stage in this state"),
        SchemaField("amount_cents", "INT64", description="Amount, in cents"),
        SchemaField("closing_date", "DATE", description="Closing_Date"),
        SchemaField("probability", "INT64", description="Probability, in percent"),
        SchemaField("owner", "STRING", description="the deal's owner (a salesperson) in Zoho"),
        SchemaField("modified_at", "TIMESTAMP", description="Zoho's Modified_Time of this state"),
    ),
    DEAL_STAGE_CHANGES: (
        SchemaField("deal_id", "STRING", description="the Zoho deal id"),
        SchemaField("stage", "STRING", description="the stage the deal moved to"),
        SchemaField("changed_at", "TIMESTAMP", description="Zoho's Modified_Time of the move"),
    ),
}


def day_start(moment: datetime) -> str:
    """The start of ``moment``'s UTC day as a TIMESTAMP literal: a constant bound BigQuery prunes
    partitions by (a query parameter or an expression would not)."""
    day = moment.astimezone(UTC)
    return f"timestamp '{day.year:04d}-{day:%m-%d} 00:00:00+00'"  # %Y leaves years before 1000 short


def within_day(column: str, moment: datetime) -> str:
    """A filter keeping ``moment``'s UTC day of ``column``, by constant bounds: BigQuery then reads that
    day's partition only."""
    start = f"{column} >= {day_start(moment)}"
    if moment.astimezone(UTC).date() == date.max:  # the last day TIMESTAMP holds has no next day
        return start
    return f"{start} and {column} < {day_start(moment + timedelta(days=1))}"


def partitions_since(table: str, since: datetime | None) -> str:
    """A constant filter on the bronze table's partition column (so BigQuery prunes): from ``since``'s
    day; every day for None."""
    if since is None:
        return every_partition(table)
    return f"{partition_column(table)} >= {day_start(since)}"


def every_partition(table: str) -> str:
    """A filter on the table's partition column that keeps every partition: for the few reads that need
    all of history (by key, pruned by clustering instead), since bronze tables require a partition filter
    (``require_partition_filter``) so that no read bills all of history by mistake."""
    return f"{partition_column(table)} >= timestamp '2000-01-01 00:00:00+00'"


def partition_column(table: str) -> str:
    """Bronze tables are partitioned by day of landing; quarantine by day of refusal."""
    return "quarantined_at" if table == QUARANTINE else "ingested_at"


BRONZE_TABLES = {
    **{table: BRONZE_SCHEMA + typed for table, typed in TYPED_COLUMNS.items()},
    QUARANTINE: QUARANTINE_SCHEMA,
}


@dataclass(frozen=True)
class Layers:
    """Dataset names of the three layers; a prefix keeps several environments in one project apart."""

    bronze: str = "bronze"
    silver: str = "silver"
    gold: str = "gold"
    # Where dbt keeps the failing rows of its tests: copies of silver's and gold's rows.
    audit: str = "dbt_test__audit"

    @classmethod
    def with_prefix(cls, prefix: str) -> Layers:
        return cls(
            bronze=f"{prefix}bronze",
            silver=f"{prefix}silver",
            gold=f"{prefix}gold",
            audit=f"{prefix}dbt_test__audit",
        )

    def all(self) -> tuple[str, str, str]:
        return (self.bronze, self.silver, self.gold)

    def datasets(self) -> tuple[str, ...]:
        """Every dataset the hub writes: the layers, and the one dbt keeps its tests' failing rows in."""
        return (*self.all(), self.audit)
