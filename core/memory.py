"""Handing back to the system the memory a burst of work freed.

glibc's malloc keeps what a process frees for reuse: on its own it gives back only the free top of a
heap, past a threshold, and large blocks it mapped apart. Free pages below a block still in use stay
the process's, so after a burst (50 webhooks at once, a batch of activities) a process keeps a few MiB
that Python (and the Rust runtime of Temporal's client, which allocates with the same malloc from its
own threads) freed. ``malloc_trim`` hands those pages back in every arena: measured after the lead
benchmark, 2 to 3 MiB of each API process and 4 to 5 MiB of the ``flows`` worker (README, Benchmark).
Where the C library is not glibc (musl, macOS) there is no such call and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger("core.memory")


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc (Windows cannot even open "no library")
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()


def give_back_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the system; False where the C library cannot."""
    if MALLOC_TRIM is None:
        return False
    MALLOC_TRIM(0)
    return True


async def give_back_periodically(every_seconds: float) -> None:
    """Hand freed memory back every ``every_seconds`` (0: never), for as long as the process runs.

    Each call takes a few milliseconds on the event loop's thread (2 to 4 ms with 300 MiB of fragmented
    heap), while other threads' allocations wait on the arena locks it holds.
    """
    if every_seconds <= 0 or MALLOC_TRIM is None:
        return
    log.info("hands memory freed by bursts of work back to the system every %.0f s", every_seconds)
    while True:
        await asyncio.sleep(every_seconds)
        give_back_freed_memory()
