"""Runs bqemulator with two changes that keep it answering under the project's load.

- One thread per DuckDB connection. bqemulator keeps one DuckDB connection for everything. Its REST
  handlers use it on the event loop's thread, but its gRPC handlers (the Storage Write and Read APIs)
  run in a thread pool and use the same connection at the same time; under load (appends while a query
  runs) the connection deadlocks and the emulator stops answering. Here every gRPC step that touches
  DuckDB is handed to the event loop's thread and waited for.
- No time-travel snapshot per write. After every write (each append, each insert) bqemulator copies
  the whole table into a snapshot for ``FOR SYSTEM_TIME AS OF``; appends then cost the table's size
  and throughput falls as bronze grows. The project never time-travels on the local emulator, so a
  write only announces the change (which refreshes caches and views) and keeps no copy.

    python -m devstack.bqemulator_main start --rest-port ... --grpc-port ...   (bqemulator's own CLI)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bqemulator import server
from bqemulator.cli import main
from bqemulator.domain.events import TableDataChanged
from bqemulator.grpc_api.read_servicer import BigQueryReadHandler
from bqemulator.grpc_api.write_servicer import BigQueryWriteHandler
from bqemulator.versioning.snapshots import SnapshotManager

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None

# The gRPC steps that read or write DuckDB (the append stream itself only hands requests to these).
WRITE_STEPS = (
    "_ensure_stream_bound",
    "_perform_append",
    "_handle_create_write_stream",
    "_handle_get_write_stream",
    "_handle_finalize_write_stream",
    "_handle_batch_commit_write_streams",
    "_handle_flush_rows",
)
READ_STEPS = ("_handle_create_read_session", "_handle_split_read_stream")


def on_loop_thread(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` run on the event loop's thread; the calling (gRPC pool) thread waits for it."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> T:
        loop = _loop
        if loop is None or threading.get_ident() == loop_thread_id:
            return function(*args, **kwargs)
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                outcome.set_result(function(*args, **kwargs))
            except BaseException as error:  # handed to the waiting thread, whatever it is
                outcome.set_exception(error)

        loop.call_soon_threadsafe(call)
        return outcome.result()

    return run


loop_thread_id = -1
_start = server.EmulatorServer.start


async def _start_remembering_loop(self: server.EmulatorServer) -> None:
    global _loop, loop_thread_id
    _loop, loop_thread_id = asyncio.get_running_loop(), threading.get_ident()
    await _start(self)


def _record_change_without_snapshot(
    self: SnapshotManager, project_id: str, dataset_id: str, table_id: str
) -> None:
    self._events.publish(TableDataChanged(project_id, dataset_id, table_id))


def install() -> None:
    """Patch the emulator's classes (before it starts)."""
    server.EmulatorServer.start = _start_remembering_loop  # type: ignore[method-assign]
    SnapshotManager.record_change = _record_change_without_snapshot  # type: ignore[method-assign]
    for handler, steps in ((BigQueryWriteHandler, WRITE_STEPS), (BigQueryReadHandler, READ_STEPS)):
        for name in steps:
            setattr(handler, name, on_loop_thread(getattr(handler, name)))


if __name__ == "__main__":
    install()
    main()
