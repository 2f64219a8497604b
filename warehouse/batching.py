"""Concurrent landings in one process share one append per table.

Each caller hands over its rows and waits; the rows of every caller that arrived within ``max_delay``
(or until ``max_rows`` gathered) go out in one append, and every caller of that append gets its outcome.
A failed append fails exactly the callers whose rows it held: their activities retry, and the next
batch is a new append. An append refused for good (``PermanentError``) may be refused for one caller's
rows: each caller's rows are then appended alone, so only the callers whose own rows are refused fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from clients.errors import PermanentError

Rows = list[dict[str, Any]]
Append = Callable[[str, Rows], Awaitable[None]]


@dataclass
class _Part:
    """One caller's rows in a batch, and their outcome."""

    rows: Rows
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, error: BaseException | None) -> None:
        if error is None:
            self.done.set_result(None)
            return
        self.done.set_exception(error)
        self.done.exception()  # retrieved here: callers that gave up must not leave a warning


@dataclass
class _Batch:
    parts: list[_Part] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None

    @property
    def rows(self) -> Rows:
        return [row for part in self.parts for row in part.rows]


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
        part = _Part(rows)
        batch.parts.append(part)
        batch.size += len(rows)
        if batch.size >= self._max_rows:
            self._flush(table, batch)
        # Shielded: one caller giving up (its activity cancelled) must not cancel the others' append.
        await asyncio.shield(part.done)

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
                error = await self._attempt(table, batch.rows)
            if isinstance(error, PermanentError) and len(batch.parts) > 1:
                # Refused for good, perhaps for one caller's rows: each caller's rows alone, as many at
                # once as the table's appends allow, each caller answered as its own append settles.
                await asyncio.gather(*(self._alone(table, slots, part) for part in batch.parts))
                return
        except asyncio.CancelledError:
            for part in batch.parts:  # the process is stopping: the callers' activities retry elsewhere
                if not part.done.done():
                    part.done.cancel()
            raise
        for part in batch.parts:  # every caller of this batch sees its outcome, whatever it is
            part.settle(error)

    async def _alone(self, table: str, slots: asyncio.Semaphore, part: _Part) -> None:
        async with slots:
            part.settle(await self._attempt(table, part.rows))

    async def _attempt(self, table: str, rows: Rows) -> Exception | None:
        """The append's error, or None once the rows are durable."""
        try:
            await self._append(table, rows)
        except Exception as error:
            return error
        return None
