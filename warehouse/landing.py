"""Landing records in bronze (and quarantine) through the real ``google-cloud-bigquery`` client.

The client is synchronous; each call runs in a worker thread so activities stay responsive. Failures
are translated into the project's Transient/Permanent errors: Temporal retries the transient ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.oauth2 import service_account

from clients.errors import PermanentError, TransientError
from core.settings import Settings
from warehouse.tables import BRONZE_TABLES, QUARANTINE, Layers

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


class WarehouseUnavailable(TransientError):
    """The warehouse could not be reached or answered with a server error: retry later."""


@dataclass(frozen=True)
class BronzeRecord:
    """One record as the source sent it, with what identifies this version of it."""

    source: str
    entity_id: str
    event_key: str
    payload: dict[str, Any]
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class QuarantineRecord:
    """A record that failed validation: kept, with the reason, instead of being dropped."""

    source: str
    entity: str
    event_key: str
    reason: str
    payload: dict[str, Any]
    entity_id: str | None = None


def bigquery_client(settings: Settings) -> bigquery.Client:
    """A client for BigQuery, or for the emulator at ``bigquery_endpoint`` (no credentials needed)."""
    if settings.bigquery_endpoint:
        return bigquery.Client(
            project=settings.bigquery_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_endpoint),
            location=settings.bigquery_location,
        )
    credentials = None
    if settings.bigquery_credentials_file:
        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            settings.bigquery_credentials_file
        )
    return bigquery.Client(
        project=settings.bigquery_project, credentials=credentials, location=settings.bigquery_location
    )


class Warehouse:
    """Creates the layers and bronze tables, lands records, runs queries."""

    def __init__(self, client: bigquery.Client, layers: Layers, timeout_seconds: float) -> None:
        self._client = client
        self.layers = layers
        self._timeout = timeout_seconds
        # The client's default retries last 10 minutes; Temporal owns the longer retries.
        self._retry = Retry(deadline=timeout_seconds)
        self._schema_ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        return cls(
            bigquery_client(settings),
            Layers.with_prefix(settings.bigquery_dataset_prefix),
            settings.bigquery_timeout_seconds,
        )

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def table_id(self, dataset: str, table: str) -> str:
        """The fully qualified ``project.dataset.table`` name, for queries."""
        return f"{self._client.project}.{dataset}.{table}"

    async def ensure_schema(self) -> None:
        """Create the bronze, silver and gold datasets and the bronze tables unless they exist."""
        await self._call(self._create_schema)
        self._schema_ready = True

    async def land(self, table: str, records: Sequence[BronzeRecord]) -> None:
        """Stream ``records`` into ``bronze.<table>``, each with its event key as the insert id.

        BigQuery drops a repeated insert id on a best-effort basis only, so silver deduplicates on
        ``event_key`` as well: landing a record twice never makes two rows downstream.
        """
        now = _timestamp(datetime.now().astimezone())
        rows = [
            {
                "source": record.source,
                "entity_id": record.entity_id,
                "event_key": record.event_key,
                "source_updated_at": _timestamp(record.source_updated_at),
                "ingested_at": now,
                "payload": json.dumps(record.payload, separators=(",", ":")),
            }
            for record in records
        ]
        await self._insert(self.layers.bronze, table, rows, [record.event_key for record in records])

    async def quarantine(self, records: Sequence[QuarantineRecord]) -> None:
        """Keep records that failed validation in ``bronze.quarantine`` with their reason."""
        now = _timestamp(datetime.now().astimezone())
        rows = [
            {
                "source": record.source,
                "entity": record.entity,
                "entity_id": record.entity_id,
                "event_key": record.event_key,
                "reason": record.reason,
                "quarantined_at": now,
                "payload": json.dumps(record.payload, separators=(",", ":")),
            }
            for record in records
        ]
        keys = [f"{record.entity}:{record.event_key}" for record in records]
        await self._insert(self.layers.bronze, QUARANTINE, rows, keys)

    async def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` (with ``@name`` query parameters) and return its rows as dicts."""
        config = bigquery.QueryJobConfig(query_parameters=list(parameters))

        def run() -> list[dict[str, Any]]:
            job = self._client.query(sql, job_config=config, retry=self._retry, timeout=self._timeout)
            return [dict(row.items()) for row in job.result(timeout=self._timeout)]

        return await self._call(run)

    async def _insert(self, dataset: str, table: str, rows: list[dict[str, Any]], ids: list[str]) -> None:
        if not rows:
            return
        if not self._schema_ready:
            await self.ensure_schema()
        table_id = self.table_id(dataset, table)

        def insert() -> Sequence[dict[str, Any]]:
            return self._client.insert_rows_json(
                table_id, rows, row_ids=ids, retry=self._retry, timeout=self._timeout
            )

        errors = await self._call(insert)
        if errors:
            raise PermanentError(SERVICE, f"rows refused by {table_id}: {errors[:3]}")

    async def _call(self, function: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(function)
        except google_errors.NotFound as error:
            # A dataset or table dropped under us: recreate it on the next attempt.
            self._schema_ready = False
            raise WarehouseUnavailable(SERVICE, f"not found: {error}") from error
        except TRANSIENT_ERRORS as error:
            raise WarehouseUnavailable(SERVICE, f"{type(error).__name__}: {error}") from error
        except google_errors.GoogleAPICallError as error:
            raise PermanentError(SERVICE, str(error), error.code) from error

    def _create_schema(self) -> None:
        for name in self.layers.all():
            dataset = bigquery.Dataset(f"{self._client.project}.{name}")
            dataset.location = self._client.location
            self._client.create_dataset(dataset, exists_ok=True, retry=self._retry, timeout=self._timeout)
        for name, schema in BRONZE_TABLES.items():
            table = bigquery.Table(self.table_id(self.layers.bronze, name), schema=list(schema))
            # Daily partitions on ingestion time keep incremental dbt reads cheap on BigQuery.
            time_column = "quarantined_at" if name == QUARANTINE else "ingested_at"
            table.time_partitioning = bigquery.TimePartitioning(field=time_column)
            self._client.create_table(table, exists_ok=True, retry=self._retry, timeout=self._timeout)


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
