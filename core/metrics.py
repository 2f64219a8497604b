"""Prometheus metrics of the worker side: what landed in bronze, what failed, how long things take.

Recorded by the activities and the warehouse layer (workflow code records nothing: it must stay
deterministic), and by the worker's visibility poll (``workers/metrics.py``), which reads from Temporal
what no single process sees: leads waiting, runs terminated or timed out, when each flow last succeeded,
the last dbt build. The worker serves them with the Temporal SDK's own metrics on one endpoint.

They live in a registry of their own, so the API, which shares modules with the workers (settings,
contracts), does not serve them. Every metric has a label: under the API's multiprocess mode a metric
without one would still leave a zero sample behind in the API's files.

Labels come from fixed sets (tables, check codes, dealers, flows, workflow types, outcomes), never from
a record: no lead, order or customer ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase

REGISTRY = CollectorRegistry()
PROCESS = ProcessCollector(registry=REGISTRY)  # the worker's memory and CPU beside what it does

# Seconds, for latencies from a webhook's arrival to a dealer or a warehouse layer: seconds to hours.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)

# --- Ingestion -------------------------------------------------------------------------------------------
BRONZE_ROWS = Counter(
    "hub_bronze_rows_total",
    "Rows landed in a bronze table (acknowledged appends).",
    ["table"],
    registry=REGISTRY,
)
QUARANTINED_ROWS = Counter(
    "hub_quarantined_rows_total",
    "Records kept in bronze.quarantine instead of their table, by the table meant and the check failed.",
    ["table", "reason"],
    registry=REGISTRY,
)
SYNC_RECORDS = Counter(
    "hub_sync_records_total",
    "Records the long jobs handled: sync is catalog, customers or backfill; count is read, landed,"
    " unchanged (already in bronze), quarantined, removed (catalog) or missing (backfill).",
    ["sync", "count"],
    registry=REGISTRY,
)
SYNC_COUNTS = {
    "catalog": ("read", "landed", "unchanged", "quarantined", "removed"),
    "customers": ("read", "landed", "unchanged", "quarantined"),
    "backfill": ("read", "landed", "unchanged", "quarantined", "missing"),
    "leads": ("read", "landed", "unchanged"),  # the lead flow's changes, from the portal database
}

# --- Failures --------------------------------------------------------------------------------------------
DEALER_DELIVERIES = Counter(
    "hub_dealer_deliveries_total",
    "Attempts to create a lead in a dealer's CRM: delivered, rejected (for good) or unavailable (retried).",
    ["dealer", "outcome"],
    registry=REGISTRY,
)
LEADS_IN_PROGRESS = Gauge(
    "hub_leads_in_progress",
    "Running lead workflows by their LeadStatus search attribute (awaiting_assignment: waiting for support).",
    ["status"],
    registry=REGISTRY,
)
PARKED_WORKFLOWS = Gauge(
    "hub_parked_workflows",
    "Running workflows holding an event a partner refused for good, by partner (Parked search attribute).",
    ["partner"],
    registry=REGISTRY,
)
ZOHO_WRITEBACKS_PARKED = Gauge(
    "hub_zoho_writebacks_parked",
    "Leads whose outcome fields Zoho refused wait in the portal database for hub parked redrive"
    " (or discard); every flows worker counts them.",
    registry=REGISTRY,
)
EVENTS_PARKED = Gauge(
    "hub_events_parked",
    "Lead events a subscriber refused for good, or did not take within their retry window, waiting in the"
    " portal database for hub parked redrive (or discard-event), each counted once whatever the number"
    " of subscribers it waits for; every flows worker counts them.",
    registry=REGISTRY,
)
RUNS_CLOSED_LAST_HOUR = Gauge(
    "hub_workflow_runs_closed_last_hour",
    "Workflow runs that failed, timed out, or were terminated or cancelled in the last hour (lead runs a"
    " later run took over from, as a reassign does, left out).",
    ["workflow_type", "status"],
    registry=REGISTRY,
)
DBT_LAST_BUILD = Gauge(
    "hub_dbt_last_build",
    "The last dbt build's models built and failed, and the last full build's tests passed, failed, warned.",
    ["result"],
    registry=REGISTRY,
)
BRONZE_FRESHNESS = Gauge(
    "hub_bronze_freshness",
    "dbt source freshness of each bronze table at the last full build: 0 pass, 1 warn, 2 error.",
    ["table"],
    registry=REGISTRY,
)
BRONZE_LOADED_AT = Gauge(
    "hub_bronze_last_landed_timestamp_seconds",
    "When the newest row of each bronze table landed, at the last full build (Unix time).",
    ["table"],
    registry=REGISTRY,
)

# --- Latency and freshness -------------------------------------------------------------------------------
LEAD_WITHDRAWALS = Counter(
    "hub_lead_withdrawals_total",
    "Leads taken from a dealer that did not accept them within its SLA (the lead moved on).",
    ["dealer"],
    registry=REGISTRY,
)
LEAD_DROPS_RECORDED = Counter(
    "hub_lead_drops_recorded_total",
    "Leads a dealer lost whose CRM could not be asked to drop them (ADF, a SOAP DMS without"
    " WithdrawLead, a REST CRM that named no such lead): recorded; the dealer may still hold the lead.",
    ["dealer"],
    registry=REGISTRY,
)
LEADS_SLA_EXHAUSTED = Counter(
    "hub_leads_sla_exhausted_total",
    "Leads no dealer accepted within the re-routes allowed: handed to the fallback owner in Zoho.",
    ["flow"],
    registry=REGISTRY,
)
ZOHO_WRITEBACKS_REFUSED = Counter(
    "hub_zoho_writebacks_refused_total",
    "Writes of a lead's outcome back to Zoho that Zoho refused for good (credentials, a picklist value"
    " the org lacks) or that failed for their whole retry window: the lead's flow went on; the fields"
    " wait for hub parked redrive.",
    ["flow"],
    registry=REGISTRY,
)
ZOHO_WRITEBACKS_DROPPED = Counter(
    "hub_zoho_writebacks_dropped_total",
    "Writes of a lead's outcome back to Zoho left out because Zoho no longer has the lead (deleted there"
    " after its delivery): Zoho refused them, and its read of the lead answered none. Not parked: no"
    " redrive could place them.",
    ["flow"],
    registry=REGISTRY,
)
EVENTS_REFUSED = Counter(
    "hub_events_refused_total",
    "Signed lead events a subscriber refused for good (an answer other than 2xx, 408, 425, 429, 500, 502,"
    " 503 and 504); the other subscribers still got them. By the subscriber's origin (scheme, host and"
    " port of a configured URL).",
    ["subscriber"],
    registry=REGISTRY,
)
LEAD_RECEIVED_TO_DELIVERED = Histogram(
    "hub_lead_received_to_delivered_seconds",
    "Time from a lead's webhook (its status received) to its creation in the dealer's CRM.",
    ["dealer"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ORDER_CHANGE_LATENCY = Histogram(
    "hub_order_change_latency_seconds",
    "Time from the API (or the feed reconciler) receiving an order change to the change reaching a layer:"
    " bronze, per change landed; gold, per dbt build, for the oldest change the build brought to gold.",
    ["layer"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "hub_last_success_timestamp_seconds",
    "When each scheduled flow last completed, and the last dbt build passed (Unix time).",
    ["flow"],
    registry=REGISTRY,
)
EXPECTED_INTERVAL = Gauge(
    "hub_expected_interval_seconds",
    "How often each flow of hub_last_success_timestamp_seconds should succeed (its schedule's interval).",
    ["flow"],
    registry=REGISTRY,
)


def count_sync(sync: str, **counts: int) -> None:
    """Add a page's counts to ``hub_sync_records_total`` (``SYNC_COUNTS`` names them)."""
    for name, value in counts.items():
        SYNC_RECORDS.labels(sync, name).inc(value)


Series = tuple[MetricWrapperBase, tuple[str, ...]]


def start_at_zero(series: Iterable[Series]) -> None:
    """Create these series (a metric and its label values) at zero, when the process starts.

    ``rate()`` counts only increases between two scrapes: a series that first appeared holding 3 would
    hide those 3. (Dealers are known once they deliver; their first minute may go uncounted.)
    """
    for metric, labels in series:
        metric.labels(*labels)


def warehouse_series(bronze_tables: list[str], quarantine_checks: list[tuple[str, str]]) -> list[Series]:
    """The warehouse worker's series whose labels are known in advance."""
    return [
        *((BRONZE_ROWS, (table,)) for table in bronze_tables),
        *((QUARANTINED_ROWS, (table, check)) for table, check in quarantine_checks),
        *((SYNC_RECORDS, (sync, count)) for sync, counts in SYNC_COUNTS.items() for count in counts),
        *((ORDER_CHANGE_LATENCY, (layer,)) for layer in ("bronze", "gold")),
    ]
