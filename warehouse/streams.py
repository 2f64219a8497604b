"""Appends through the BigQuery Storage Write API: Arrow rows into COMMITTED streams or the default stream.

Two ways to append, for two kinds of work:

* ``append_at`` (long jobs: backfills, syncs): the job keeps a ``StreamCursor`` (stream name and next
  offset) in its workflow state and passes it to every append. BigQuery refuses an append at an offset
  already written (``ALREADY_EXISTS``), so a retried append that already landed adds nothing: exactly
  once.
* ``append_default`` (short flows sharing one append per worker): the table's ``_default`` stream, which
  has no offsets. An append whose answer was lost and is retried can land twice; silver keeps the first
  row of each ``event_key``.

The client is synchronous (gRPC); the async ``Warehouse`` runs these calls in worker threads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pyarrow as pa
from google.api_core import exceptions as google_errors

from clients.errors import PermanentError, TransientError
from warehouse.libraries import BigQueryWriteClient, BigQueryWriteGrpcTransport, SchemaField, types

log = logging.getLogger(__name__)

SERVICE = "bigquery"
# BigQuery refuses an append request over 10 MB; the rest of the request needs a little room.
MAX_REQUEST_BYTES = 9 * 1024 * 1024
# A job whose stream keeps disappearing under it (the table recreated, the service restarted) stops
# trying after this many new streams in one append, and its activity retries later.
MAX_NEW_STREAMS_PER_APPEND = 3

_ARROW_TYPES: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "JSON": pa.string(),  # BigQuery parses JSON columns from their text
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "INTEGER": pa.int64(),
    "INT64": pa.int64(),
    "FLOAT": pa.float64(),
    "FLOAT64": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
}


# Which of these event keys the table holds: how a retried append checks that the rows an earlier
# attempt wrote at its offset are its own rows, not merely as many rows.
HeldKeys = Callable[[list[str]], set[str]]


class TableGone(TransientError):
    """The table is not there (dropped, or not created yet): create the schema and retry."""


class SchemaNotSeen(TransientError):
    """The Storage Write API refused rows carrying columns it does not see in the table: minutes after an
    upgrade added them, it passes; a table recreated without them (an older version's replica) needs the
    upgrade again, which the next attempt makes."""


class StreamGone(TransientError):
    """The stream is no longer usable (unknown, finalized, or behind the job's offset): start a new one."""


@dataclass
class StreamCursor:
    """Where a long job appends next: kept in workflow state, carried over continue-as-new.

    ``stream`` is empty until the first append creates one; ``offset`` counts the rows the job has landed
    in that stream, which is the offset of its next append.
    """

    stream: str = ""
    offset: int = 0


def arrow_schema(fields: Sequence[SchemaField]) -> pa.Schema:
    """The Arrow schema of a table's rows, column for column."""
    return pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.field_type], nullable=f.mode != "REQUIRED") for f in fields]
    )


def write_client(endpoint: str, credentials: Any = None) -> BigQueryWriteClient:
    """A Storage Write API client: an emulator's ``host:port`` over plain gRPC, or Google's service."""
    if endpoint:
        # Reconnect within seconds once a local emulator is back, not after gRPC's default two minutes.
        options = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)]
        channel = grpc.insecure_channel(endpoint, options=options)
        return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))  # type: ignore[no-untyped-call]
    return BigQueryWriteClient(credentials=credentials)  # type: ignore[no-untyped-call]


class StorageWriter:
    """Appends Arrow record batches to tables named ``projects/<p>/datasets/<d>/tables/<t>``."""

    def __init__(
        self, client: BigQueryWriteClient, timeout_seconds: float, max_request_bytes: int = MAX_REQUEST_BYTES
    ) -> None:
        self._client = client
        self._timeout = timeout_seconds
        self._max_request_bytes = max_request_bytes

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def append_default(self, table: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to the table's default stream (at least once)."""
        stream = f"{table}/streams/_default"
        for batch in self._batches(schema, rows):
            code, message = self._append(stream, schema, batch, offset=None)
            if code is grpc.StatusCode.NOT_FOUND:
                raise TableGone(SERVICE, f"{table}: {message}")
            if code is not grpc.StatusCode.OK:
                raise _error(code, f"append to {stream}: {message}")

    def append_at(
        self,
        table: str,
        schema: pa.Schema,
        cursor: StreamCursor,
        rows: list[dict[str, Any]],
        held: HeldKeys | None = None,
    ) -> StreamCursor:
        """Append ``rows`` at ``cursor`` and return the cursor after them (exactly once).

        The caller passes the same cursor when it retries: rows an earlier attempt already landed are
        recognised at their offset and not written again, once ``held`` confirms the table holds their
        event keys (the same number of other rows, read again from a source that changed meanwhile, is
        not the same page). When the stream is gone, or an earlier attempt landed other rows at this
        offset, the rest goes into a new stream; the rows' event keys still let silver keep one of each.

        Raises:
            TransientError: the service could not be reached, or the stream kept disappearing.
            PermanentError: the service refused the rows themselves.
        """
        batches = self._batches(schema, rows)
        stream, offset = cursor.stream, cursor.offset
        new_streams = 0
        index = 0
        while index < len(batches):
            if not stream:
                if new_streams == MAX_NEW_STREAMS_PER_APPEND:
                    raise StreamGone(SERVICE, f"{table}: {new_streams} new streams in one append, all lost")
                stream, offset = self._create_stream(table), 0
                new_streams += 1
            code, message = self._append(stream, schema, batches[index], offset)
            if code is grpc.StatusCode.OK:
                offset += batches[index].num_rows
                index += 1
            elif code is grpc.StatusCode.ALREADY_EXISTS:
                index += self._landed_before(stream, offset, batches[index:], held)
                stream = ""  # finalized while finding out how far the earlier attempt got
            elif code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                log.warning("stream %s is gone (%s); appending to a new one", stream, message)
                stream = ""
                # An earlier attempt may have met the same lost stream and landed these rows in a new
                # one before its answer was lost: rows the table holds already are not appended again.
                if self._all_held(batches[index:], held):
                    log.info("the rows of %s's lost stream landed before, in another: not again", table)
                    index = len(batches)
            elif code is grpc.StatusCode.OUT_OF_RANGE:
                # The stream holds fewer rows than the job landed: it is not the stream the job wrote.
                log.error("stream %s is behind offset %d (%s); using a new one", stream, offset, message)
                stream = ""
            else:
                raise _error(code, f"append to {stream} at offset {offset}: {message}")
        return StreamCursor(stream, offset)

    def _landed_before(
        self, stream: str, offset: int, batches: Sequence[pa.RecordBatch], held: HeldKeys | None
    ) -> int:
        """How many of ``batches`` (appended from ``offset``) an earlier attempt already landed.

        BigQuery answers ALREADY_EXISTS without saying how many rows follow the offset, so the stream is
        finalized, which returns its row count. If that count ends exactly after one of these batches and
        the table holds those batches' event keys, the earlier attempt landed these rows up to there;
        otherwise it landed other rows, and all of these go to a new stream.
        """
        rows = self._finalize(stream)
        end = offset
        for count, batch in enumerate(batches, start=1):
            end += batch.num_rows
            if rows == end and self._held(batches[:count], held):
                return count
            if rows == end:
                log.warning(
                    "stream %s holds as many rows as this page from offset %d, but not its rows: an earlier"
                    " attempt landed other versions; appending these to a new stream",
                    stream, offset,
                )  # fmt: skip
                return 0
        log.warning(
            "stream %s holds %d rows, not the end of any batch appended from offset %d: an earlier attempt"
            " landed other rows; appending these to a new stream (silver keeps one row per event key)",
            stream, rows, offset,
        )  # fmt: skip
        return 0

    @classmethod
    def _all_held(cls, batches: Sequence[pa.RecordBatch], held: HeldKeys | None) -> bool:
        """Whether the table is known to hold every event key of ``batches`` (False when it cannot be
        asked, or the rows have no event keys)."""
        if held is None or "event_key" not in batches[0].schema.names:
            return False
        return cls._held(batches, held)

    @staticmethod
    def _held(batches: Sequence[pa.RecordBatch], held: HeldKeys | None) -> bool:
        """Whether the table holds every event key of ``batches`` (True when it cannot be asked)."""
        if held is None or "event_key" not in batches[0].schema.names:
            return True
        keys = [str(key) for batch in batches for key in batch.column("event_key").to_pylist()]
        return set(keys) <= held(keys)

    def _batches(self, schema: pa.Schema, rows: list[dict[str, Any]]) -> list[pa.RecordBatch]:
        """``rows`` as record batches under the request size limit; the same rows split the same way."""
        if not rows:
            return []
        batch = pa.RecordBatch.from_pylist(rows, schema=schema)
        parts = max(1, math.ceil(batch.nbytes / self._max_request_bytes))
        size = math.ceil(batch.num_rows / parts)
        return [batch.slice(start, size) for start in range(0, batch.num_rows, size)]

    def _create_stream(self, table: str) -> str:
        stream = types.WriteStream(type_=types.WriteStream.Type.COMMITTED)
        try:
            created = self._call(lambda: self._client.create_write_stream(parent=table, write_stream=stream))
        except google_errors.NotFound as error:
            raise TableGone(SERVICE, f"{table}: {error}") from error
        return str(created.name)

    def _finalize(self, stream: str) -> int:
        try:
            response = self._call(lambda: self._client.finalize_write_stream(name=stream))
        except _STREAM_STATE_ERRORS as error:
            raise StreamGone(SERVICE, f"finalize {stream}: {error}") from error
        return int(response.row_count)

    def _append(
        self, stream: str, schema: pa.Schema, batch: pa.RecordBatch, offset: int | None
    ) -> tuple[grpc.StatusCode, str]:
        """One append request; returns the status BigQuery answered it with."""
        request = types.AppendRowsRequest(
            write_stream=stream,  # on every request, not only the first of a connection
            arrow_rows=types.AppendRowsRequest.ArrowData(
                writer_schema=types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes()),
                rows=types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
                ),
            ),
        )
        if offset is not None:
            request.offset = offset  # type: ignore[assignment]  # proto-plus wraps it in an Int64Value
        # BigQuery routes an append connection by its stream.
        metadata = (("x-goog-request-params", f"write_stream={stream}"),)

        def send() -> tuple[grpc.StatusCode, str]:
            # Read the call to its end: a call left open holds a server thread until its deadline.
            answers = list(
                self._client.append_rows(iter([request]), timeout=self._timeout, metadata=metadata)
            )
            if not answers:
                raise TransientError(SERVICE, f"append to {stream}: the stream closed without an answer")
            return _status(answers[0].error.code), str(answers[0].error.message)

        try:
            answer: tuple[grpc.StatusCode, str] = self._call(send)
            return answer
        except _STREAM_STATE_ERRORS as error:
            # Some answers about the stream's state arrive as errors of the call rather than in the
            # response; they mean the same.
            code: grpc.StatusCode = error.grpc_status_code or grpc.StatusCode.UNKNOWN
            return code, str(error)

    def _call(self, function: Any) -> Any:
        try:
            return function()
        except _STREAM_STATE_ERRORS:
            raise  # the caller decides: a table or stream that is gone, an offset already written
        except (google_errors.ServerError, google_errors.TooManyRequests, google_errors.RetryError) as error:
            raise TransientError(SERVICE, f"{type(error).__name__}: {error}") from error
        except google_errors.GoogleAPICallError as error:
            code = error.grpc_status_code
            if _schema_not_seen_yet(code, str(error)):
                raise SchemaNotSeen(SERVICE, str(error)) from error
            if code in _TRANSIENT_CODES:
                raise TransientError(SERVICE, str(error)) from error
            raise PermanentError(SERVICE, str(error)) from error
        except grpc.RpcError as error:  # raised by the stream itself, outside the API core wrappers
            code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
            if code in _TRANSIENT_CODES or code is grpc.StatusCode.UNKNOWN:
                raise TransientError(SERVICE, f"{code.name}: {error}") from error
            raise _error(code, str(error)) from error


_STREAM_STATE_ERRORS = (
    google_errors.NotFound,
    google_errors.AlreadyExists,
    google_errors.FailedPrecondition,
    google_errors.OutOfRange,
)
_TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    }
)


def _status(code: int) -> grpc.StatusCode:
    return next((status for status in grpc.StatusCode if status.value[0] == code), grpc.StatusCode.UNKNOWN)


def _error(code: grpc.StatusCode, message: str) -> TransientError | PermanentError:
    if _schema_not_seen_yet(code, message):
        return SchemaNotSeen(SERVICE, f"{code.name}: {message}")
    if code in _TRANSIENT_CODES:
        return TransientError(SERVICE, f"{code.name}: {message}")
    return PermanentError(SERVICE, f"{code.name}: {message}")


# The Storage Write API sees a table's new columns some minutes after the update that added them (an
# upgrade of bronze, ``Warehouse._upgrade``): until then it refuses rows that carry them with this
# invalid argument, "Input schema has more fields than BigQuery schema, extra fields: ...". It passes.
_SCHEMA_NOT_SEEN_YET = "schema has more fields than bigquery schema"


def _schema_not_seen_yet(code: grpc.StatusCode | None, message: str) -> bool:
    return code is grpc.StatusCode.INVALID_ARGUMENT and _SCHEMA_NOT_SEEN_YET in message.lower()
