"""Concurrent landings in one process share one append per table.

Each caller hands over its rows and waits; the rows of every caller that arrived within ``max_delay``
(or until ``max_rows`` gathered) go out in one append, and every caller of that append gets its outcome.
A failed append fails exactly the callers whose rows it held: their activities retry, and the next
batch is a new append.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Rows = list[dict[str, Any]]
Append = Callable[[str, Rows], Awaitable[None]]


@dataclass
class _Batch:
    rows: Rows = field(default_factory=list)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    timer: asyncio.TimerHandle | None = None


class SharedAppends:
    """Gathers rows per table and appends them together.

    Args:
        append: Appends a list of rows to a table; the batch's outcome is whatever it raises.
        max_rows: A batch goes out at once when it holds this many rows.
        max_delay: A batch goes out at the latest this long after its first rows arrived (seconds).
        max_in_flight: Appends per table under way at once; later batches wait for a free slot.
    """

    def __init__(self, append: Append, max_rows: int, max_delay: float, max_in_flight: int = 4) -> None:
        self._append = append
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._max_in_flight = max_in_flight
        self._open: dict[str, _Batch] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def land(self, table: str, rows: Rows) -> None:
        """Return once ``rows`` are durable in ``table``; raise what their batch's append raised."""
        if not rows:
            return
        batch = self._open.get(table)
        if batch is None:
            batch = self._open[table] = _Batch()
            batch.timer = asyncio.get_running_loop().call_later(self._max_delay, self._flush, table, batch)
        batch.rows.extend(rows)
        if len(batch.rows) >= self._max_rows:
            self._flush(table, batch)
        # Shielded: one caller giving up (its activity cancelled) must not cancel the others' append.
        await asyncio.shield(batch.done)

    async def drain(self) -> None:
        """Send what is gathered and wait for every append under way (before the process stops)."""
        for table, batch in list(self._open.items()):
            self._flush(table, batch)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self, table: str, batch: _Batch) -> None:
        if self._open.get(table) is not batch:
            return  # already sent
        del self._open[table]
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._send(table, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, table: str, batch: _Batch) -> None:
        slots = self._slots.setdefault(table, asyncio.Semaphore(self._max_in_flight))
        try:
            async with slots:
                await self._append(table, batch.rows)
        except asyncio.CancelledError:
            batch.done.cancel()  # the process is stopping: the callers' activities retry elsewhere
            raise
        except Exception as error:  # every caller of this batch sees it, whatever it is
            batch.done.set_exception(error)
            batch.done.exception()  # retrieved here: callers that gave up must not leave a warning
        else:
            batch.done.set_result(None)
