"""Landing records in bronze (and quarantine): the Storage Write API for rows, the REST API for the rest.

Rows go in as Arrow through the BigQuery Storage Write API (``warehouse.streams``): short flows share one
append per table and process (``warehouse.batching``), long jobs append at offsets they keep. Datasets,
tables and queries use the real ``google-cloud-bigquery`` client. Both clients are synchronous; each call
runs in a worker thread so activities stay responsive. Failures become the project's Transient/Permanent
errors: Temporal retries the transient ones.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa
import requests
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import service_account
from pydantic import ValidationError

from clients.errors import PermanentError, TransientError
from core.metrics import BRONZE_ROWS, QUARANTINED_ROWS
from core.settings import Settings
from warehouse.batching import SharedAppends
from warehouse.errors import WarehouseUnavailable
from warehouse.libraries import bigquery
from warehouse.streams import (
    SchemaNotSeen,
    StorageWriter,
    StreamCursor,
    TableGone,
    arrow_schema,
    write_client,
)
from warehouse.tables import (
    BRONZE_TABLES,
    QUARANTINE,
    Layers,
    every_partition,
    partition_column,
    partitions_since,
)

SERVICE = "bigquery"
T = TypeVar("T")
# BigQuery answers these when it is (or part of it is) temporarily unable to serve.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    google_errors.ServerError,
    google_errors.TooManyRequests,
    google_errors.RetryError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    TimeoutError,
    ConnectionError,
)


# BigQuery's reasons for refusals that backing off overcomes (its troubleshooting page: "retry using
# exponential backoff"), though they come as 403 or 400: a short-term rate limit, a project's concurrent
# query quota, a backend hiccup.
RETRYABLE_REASONS = frozenset(
    {
        "rateLimitExceeded",
        "jobRateLimitExceeded",
        "quotaExceeded",
        "backendError",
        "internalError",
        "badGateway",
    }
)
UPGRADE_ATTEMPTS = 3  # a table another process upgraded meanwhile is read again (``_upgrade``)


def reason_of(error: google_errors.GoogleAPICallError) -> str:
    """The reason BigQuery gave for an error (``errors[0].reason``), or ``""``."""
    try:
        return str(error.errors[0]["reason"])
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""


# Keeps each entity's latest bronze row (by landing time); the syncs read what they landed last with it.
# Each entity's newest row, in silver's order (the macro latest_version): by the source's time (a SKU's:
# when it was read), then by when it landed.
LATEST_PER_ENTITY = (
    "qualify row_number() over (partition by entity_id"
    " order by source_updated_at desc nulls last, ingested_at desc, event_key) = 1"
)


@dataclass(frozen=True)
class BronzeRecord:
    """One record as the source sent it, with what identifies this version of it."""

    source: str
    entity_id: str
    event_key: str
    payload: dict[str, Any]
    source_updated_at: datetime | None = None
    # The table's typed columns (``warehouse.tables.TYPED_COLUMNS``), read from the payload.
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuarantineRecord:
    """A record that failed validation: kept, with the reason, instead of being dropped.

    ``reason`` says what was wrong in words (it may quote the record); ``code`` names the check that
    failed, from a fixed set per source: it is the metrics' label.
    """

    source: str
    entity: str
    event_key: str
    reason: str
    payload: dict[str, Any]
    entity_id: str | None = None
    code: str = "invalid"


# How far the clocks of a source and of the landing may disagree: no version lands before its source
# time less this, so a read of what landed can start its days there.
LANDING_CLOCK_SKEW = timedelta(hours=1)


def landed_since(source_times: Iterable[datetime | None]) -> datetime | None:
    """The earliest moment records changed at ``source_times`` can have landed (the oldest, less the
    clocks' skew), which bounds the days a read of what landed scans; None where one time is unknown
    (the read then scans every day)."""
    times = list(source_times)
    if not times or any(at is None for at in times):
        return None
    try:
        return min(at for at in times if at is not None) - LANDING_CLOCK_SKEW
    except OverflowError:  # a source time in the year 1 (Master Data serves such dates): every day
        return None


class InvalidRecord(ValueError):
    """A record that must go to quarantine instead of bronze; ``code`` names the check it failed."""

    def __init__(self, reason: str, quarantine: QuarantineRecord) -> None:
        super().__init__(reason)
        self.quarantine = quarantine

    @property
    def code(self) -> str:
        return self.quarantine.code


def validation_reason(error: ValidationError, record: str) -> str:
    """Every problem pydantic found, as ``field: message; ...`` (the quarantine reason)."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or record
        problems.append(f"{location}: {item['msg']}")
    return "; ".join(problems)


def _credentials(settings: Settings) -> Credentials | None:
    """The service account's credentials if a key file is set; None means application default ones."""
    if not settings.bigquery_credentials_file:
        return None
    return service_account.Credentials.from_service_account_file(  # type: ignore[no-any-return,no-untyped-call]
        settings.bigquery_credentials_file
    )


def bigquery_client(settings: Settings) -> bigquery.Client:
    """A client for BigQuery, or for the emulator at ``bigquery_endpoint`` (no credentials needed)."""
    if settings.bigquery_endpoint:
        return bigquery.Client(
            project=settings.bigquery_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_endpoint),
            location=settings.bigquery_location,
        )
    return bigquery.Client(
        project=settings.bigquery_project,
        credentials=_credentials(settings),
        location=settings.bigquery_location,
    )


def storage_writer(settings: Settings) -> StorageWriter:
    """A Storage Write API writer for BigQuery, or for the emulator's gRPC port beside its REST one."""
    if settings.bigquery_endpoint:
        client = write_client(settings.bigquery_write_endpoint)
    else:
        client = write_client("", _credentials(settings))
    return StorageWriter(client, settings.bigquery_timeout_seconds)


class Warehouse:
    """Creates the layers and bronze tables, lands records, runs queries."""

    def __init__(
        self,
        client: bigquery.Client,
        writer: StorageWriter,
        layers: Layers,
        timeout_seconds: float,
        batch_rows: int = 500,
        batch_delay_seconds: float = 0.05,
        kms_key: str = "",
    ) -> None:
        self._client = client
        self._kms_key = kms_key
        self._writer = writer
        self.layers = layers
        self._timeout = timeout_seconds
        # The client's own retry rule (rate limits and backend errors by their reason, not only 429 and
        # 5xx), within the call's deadline: its default lasts 10 minutes; Temporal owns longer retries.
        self._retry = bigquery.DEFAULT_RETRY.with_deadline(timeout_seconds)
        self._schema_ready = False
        self._creating_schema: asyncio.Future[None] | None = None  # the attempt callers share
        self._schemas = {name: arrow_schema(fields) for name, fields in BRONZE_TABLES.items()}
        self._shared = SharedAppends(self._append_default, batch_rows, batch_delay_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        return cls(
            bigquery_client(settings),
            storage_writer(settings),
            Layers.with_prefix(settings.bigquery_dataset_prefix),
            settings.bigquery_timeout_seconds,
            settings.warehouse_batch_rows,
            settings.warehouse_batch_delay_seconds,
            settings.bigquery_kms_key,
        )

    async def aclose(self) -> None:
        """Send the rows gathered for shared appends, then close both clients."""
        await self._shared.drain()
        self._writer.close()
        self._client.close()  # type: ignore[no-untyped-call]

    def table_id(self, dataset: str, table: str) -> str:
        """The fully qualified ``project.dataset.table`` name, for queries."""
        return f"{self._client.project}.{dataset}.{table}"

    async def ensure_schema(self) -> None:
        """Create the bronze, silver and gold datasets and the bronze tables unless they exist."""
        await self._call(self._create_schema)
        self._schema_ready = True

    async def ready(self) -> None:
        """Make sure the schema exists: concurrent callers share one attempt, and its outcome.

        A worker calls this at start, so its first landings do not wait for the datasets and tables;
        while the warehouse is away, every landing waiting on the attempt fails with it, at once.
        """
        if self._schema_ready:
            return
        if self._creating_schema is None or self._creating_schema.done():
            self._creating_schema = asyncio.ensure_future(self.ensure_schema())
            # Read here too: if every caller gave up, a failure must not be reported as never retrieved.
            self._creating_schema.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: a caller that gives up does not cancel the attempt the others wait on.
        await asyncio.shield(self._creating_schema)

    async def land(self, table: str, records: Sequence[BronzeRecord]) -> None:
        """Land ``records`` in ``bronze.<table>`` in an append shared with concurrent landings.

        Returns once they are durable. A retry after a lost answer can land a record twice; silver keeps
        one row per ``event_key``.
        """
        await self._shared.land(table, bronze_rows(records))
        count_landed(table, records)

    async def quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        """Keep records that failed validation in ``bronze.quarantine`` with their reason (shared append)."""
        await self._shared.land(QUARANTINE, quarantine_rows(records))
        count_quarantined(records)

    async def land_at(
        self,
        table: str,
        cursor: StreamCursor,
        records: Sequence[BronzeRecord],
        *,
        landed_since: datetime | None = None,
    ) -> StreamCursor:
        """Land ``records`` in ``bronze.<table>`` at ``cursor``, exactly once; return the cursor after them.

        For long jobs that keep the cursor in workflow state: retried with the same cursor and records, an
        append that already landed adds nothing. ``landed_since``: none of them can have landed before
        (bounds the days a check of what landed reads, where one is needed).
        """
        after = await self._append_at(table, cursor, bronze_rows(records), landed_since)
        count_landed(table, records)
        return after

    async def quarantine_at(
        self,
        cursor: StreamCursor,
        records: Sequence[QuarantineRecord],
        *,
        landed_since: datetime | None = None,
    ) -> StreamCursor:
        """``land_at`` for quarantined records."""
        after = await self._append_at(QUARANTINE, cursor, quarantine_rows(records), landed_since)
        count_quarantined(records)
        return after

    async def landed_keys(
        self,
        tables: Sequence[str],
        keys: Sequence[str],
        *,
        entity_ids: Sequence[str | None],
        landed_since: datetime | None = None,
    ) -> set[str]:
        """Which of ``keys`` are event keys of rows already in any of these bronze tables (one query).

        ``entity_ids`` are the records' entities (None for a record without one, kept in quarantine):
        the tables are clustered by entity, so BigQuery reads only their blocks, where a read by key
        alone would scan the key column of all of history on every call. ``landed_since`` (no version of
        them can have landed before) also prunes the days before it.
        """
        if not keys:
            return set()
        await self.ready()
        rows = await self.query(*self._keys_query(tables, keys, entity_ids, landed_since))
        return {str(row["event_key"]) for row in rows}

    def _keys_query(
        self,
        tables: Sequence[str],
        keys: Sequence[str],
        entity_ids: Sequence[str | None],
        landed_since: datetime | None = None,
    ) -> tuple[str, list[Any]]:
        """The query (and its parameters) for which of ``keys`` are event keys in these bronze tables."""
        named = sorted({entity for entity in entity_ids if entity is not None})
        parameters: list[Any] = [
            bigquery.ArrayQueryParameter("keys", "STRING", list(keys)),
            bigquery.ArrayQueryParameter("entities", "STRING", named),
        ]
        entities = "entity_id in unnest(@entities)"
        if None in entity_ids:
            entities = f"({entities} or entity_id is null)"
        selects = [
            f"select event_key from `{self.table_id(self.layers.bronze, table)}`"
            f" where event_key in unnest(@keys) and {entities} and {partitions_since(table, landed_since)}"
            for table in tables
        ]
        return " union distinct ".join(selects), parameters

    async def latest_keys(self, table: str, entity_ids: Sequence[str]) -> dict[str, str]:
        """The event key of each entity's latest row (``LATEST_PER_ENTITY``) in ``bronze.<table>``.

        For syncs that land a version only when the content changed: the key carries the content's hash.
        """
        if not entity_ids:
            return {}
        await self.ready()
        rows = await self.query(
            f"select entity_id, event_key from `{self.table_id(self.layers.bronze, table)}`"
            f" where entity_id in unnest(@ids) and {every_partition(table)} {LATEST_PER_ENTITY}",
            [bigquery.ArrayQueryParameter("ids", "STRING", list(entity_ids))],
        )
        return {str(row["entity_id"]): str(row["event_key"]) for row in rows}

    async def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` (with ``@name`` query parameters) and return its rows as dicts."""
        try:
            return await asyncio.wait_for(
                self._call(lambda: self._run_query(sql, parameters)), timeout=3 * self._timeout
            )
        except TimeoutError as error:  # the client's own deadlines did not hold
            raise WarehouseUnavailable(SERVICE, f"no answer within {3 * self._timeout:.0f} s") from error

    async def execute(self, sql: str) -> int:
        """Run a DML statement (no client deadline: it may take minutes); the number of rows it changed."""

        def run() -> int:
            job = self._client.query(sql, retry=self._retry, job_retry=None)
            job.result(retry=self._retry, job_retry=None)
            return int(job.num_dml_affected_rows or 0)

        return await self._call(run)

    def _run_query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """``query``'s blocking part, for code already on a worker thread."""
        config = bigquery.QueryJobConfig(query_parameters=list(parameters))
        # No job retries (the client's default goes on for 10 minutes): callers retry, or answer 503.
        job = self._client.query(
            sql, job_config=config, retry=self._retry, job_retry=None, timeout=self._timeout
        )
        rows = job.result(timeout=self._timeout, retry=self._retry, job_retry=None)
        return [dict(row.items()) for row in rows]

    def _held_keys(
        self, table: str, rows: list[dict[str, Any]], landed_since: datetime | None, keys: list[str]
    ) -> set[str]:
        """``landed_keys`` for one table, blocking: for the writer's thread, when a retried append meets
        its offset written, or a stream lost. ``rows``: the append's, whose entities narrow the read."""
        entities = list({row.get("entity_id") for row in rows})
        query = self._keys_query([table], keys, entities, landed_since)
        return {str(row["event_key"]) for row in self._run_query(*query)}

    async def _append_default(self, table: str, rows: list[dict[str, Any]]) -> None:
        await self.ready()
        path, schema = self._path(table), self._schemas[table]
        await self._call(lambda: self._writer.append_default(path, schema, rows))

    async def _append_at(
        self, table: str, cursor: StreamCursor, rows: list[dict[str, Any]], landed_since: datetime | None
    ) -> StreamCursor:
        if not rows:
            return cursor
        await self.ready()
        path, schema = self._path(table), self._schemas[table]
        # Asked only where an offset was written already, or the stream was lost.
        held = functools.partial(self._held_keys, table, rows, landed_since)
        return await self._call(lambda: self._writer.append_at(path, schema, cursor, rows, held))

    def _path(self, table: str) -> str:
        """The bronze table's resource name, as the Storage Write API names it."""
        return f"projects/{self._client.project}/datasets/{self.layers.bronze}/tables/{table}"

    async def _call(self, function: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(function)
        except (google_errors.NotFound, TableGone) as error:
            # A dataset or table dropped under us: recreate it on the next attempt.
            self._schema_ready = False
            raise WarehouseUnavailable(SERVICE, f"not found: {error}") from error
        except SchemaNotSeen:
            self._schema_ready = False  # the next attempt checks the table's columns again (_upgrade)
            raise
        except (TransientError, PermanentError):
            raise
        except TRANSIENT_ERRORS as error:
            raise WarehouseUnavailable(SERVICE, f"{type(error).__name__}: {error}") from error
        except google_errors.GoogleAPICallError as error:
            if reason_of(error) in RETRYABLE_REASONS:  # a 403 rateLimitExceeded is no refusal for good
                raise WarehouseUnavailable(SERVICE, f"{type(error).__name__}: {error}") from error
            raise PermanentError(SERVICE, str(error), error.code) from error
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
            # (A number beyond its column's INT64 is an OverflowError: retrying cannot make it fit.)
            raise PermanentError(SERVICE, f"rows do not fit the table: {error}") from error

    def dataset_definition(self, name: str) -> bigquery.Dataset:
        """A layer's dataset: in the client's location, its tables encrypted with the KMS key if one is set.

        The key is the dataset's default, so the tables dbt creates in silver, gold and the audit dataset
        use it too.
        """
        dataset = bigquery.Dataset(f"{self._client.project}.{name}")
        dataset.location = self._client.location
        if self._kms_key:
            dataset.default_encryption_configuration = bigquery.EncryptionConfiguration(
                kms_key_name=self._kms_key
            )
        return dataset

    def _create_schema(self) -> None:
        # The audit dataset too: dbt would create it without the key, and it holds rows of silver and gold.
        for name in self.layers.datasets():
            wanted = self.dataset_definition(name)
            dataset = self._client.create_dataset(
                wanted, exists_ok=True, retry=self._retry, timeout=self._timeout
            )
            if self._kms_key and dataset.default_encryption_configuration != (
                wanted.default_encryption_configuration
            ):  # a dataset made before the key was set: its new tables use the key from now on
                dataset.default_encryption_configuration = wanted.default_encryption_configuration
                self._client.update_dataset(
                    dataset, ["default_encryption_configuration"], retry=self._retry, timeout=self._timeout
                )
        for name, schema in BRONZE_TABLES.items():
            table = bigquery.Table(self.table_id(self.layers.bronze, name), schema=list(schema))
            # Daily partitions on ingestion time keep incremental dbt reads cheap on BigQuery, and a read
            # without a filter on them is refused rather than billed for all of history.
            table.time_partitioning = bigquery.TimePartitioning(field=partition_column(name))
            table.require_partition_filter = True
            # Syncs ask for the latest version of a page of entities: clustering keeps that read small.
            table.clustering_fields = ["entity_id"]
            found = self._client.create_table(table, exists_ok=True, retry=self._retry, timeout=self._timeout)
            self._upgrade(found, schema)

    def _upgrade(self, table: bigquery.Table, schema: Sequence[bigquery.SchemaField]) -> None:
        """Bring a table made by an earlier version up to this one, in place: the (nullable) columns
        added since, and the partition filter it requires. One update: a second one would carry the
        table's old etag and be refused. So is the update of a second replica upgrading at the same
        moment (412): it reads the table again and finds what is left to do, most likely nothing."""
        for _ in range(UPGRADE_ATTEMPTS - 1):
            try:
                return self._upgrade_once(table, schema)
            except google_errors.PreconditionFailed:
                table = self._client.get_table(table.reference, retry=self._retry, timeout=self._timeout)
        return self._upgrade_once(table, schema)

    def _upgrade_once(self, table: bigquery.Table, schema: Sequence[bigquery.SchemaField]) -> None:
        have = {column.name for column in table.schema}
        missing = [column for column in schema if column.name not in have]
        fields = []
        if missing:
            table.schema = [*table.schema, *missing]
            fields.append("schema")
        if not table.require_partition_filter:
            table.require_partition_filter = True
            fields.append("require_partition_filter")
        if not fields:
            return
        self._client.update_table(table, fields, retry=self._retry, timeout=self._timeout)
        # The same as DDL, which changes nothing on BigQuery after the update above, but is what the
        # local emulator applies to its storage (it records the update without altering the table).
        for column in missing:
            self._run_query(
                f"alter table `{table.project}.{table.dataset_id}.{table.table_id}`"
                f" add column if not exists {column.name} {column.field_type}"
            )


def count_landed(table: str, records: Sequence[BronzeRecord]) -> None:
    """Count rows an append acknowledged (a retry after a lost answer may count its rows again)."""
    if records:
        BRONZE_ROWS.labels(table).inc(len(records))


def count_quarantined(records: Sequence[QuarantineRecord]) -> None:
    for record in records:
        QUARANTINED_ROWS.labels(record.entity, record.code).inc()


def bronze_rows(records: Sequence[BronzeRecord]) -> list[dict[str, Any]]:
    """Bronze rows of ``records``: the ingestion metadata and the payload as JSON text."""
    now = datetime.now().astimezone()
    return [
        {
            "source": record.source,
            "entity_id": record.entity_id,
            "event_key": record.event_key,
            "source_updated_at": record.source_updated_at,
            "ingested_at": now,
            "payload": _json(record.payload),
            **record.columns,
        }
        for record in records
    ]


def quarantine_rows(records: Sequence[QuarantineRecord]) -> list[dict[str, Any]]:
    """Quarantine rows of ``records``, each with its reason."""
    now = datetime.now().astimezone()
    return [
        {
            "source": record.source,
            "entity": record.entity,
            "entity_id": record.entity_id,
            "event_key": record.event_key,
            "reason": record.reason,
            "quarantined_at": now,
            "payload": _json(record.payload),
        }
        for record in records
    ]


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
