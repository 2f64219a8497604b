"""Freed memory goes back to the system: what glibc keeps after a burst, ``malloc_trim`` hands back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from core import memory

needs_glibc = pytest.mark.skipif(memory.MALLOC_TRIM is None, reason="malloc_trim is glibc's")

# In a fresh interpreter: 100 MiB of blocks malloc serves (larger than Python's own small-object
# allocator takes), all freed but the last, which pins the heap's top so glibc cannot shrink it by itself.
BURST = textwrap.dedent(
    """
    from core.memory import give_back_freed_memory

    def resident_mib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    blocks = [bytes(2048) for _ in range(50_000)]
    pinned = blocks[-1]
    del blocks
    before = resident_mib()
    give_back_freed_memory()
    print(before, resident_mib())
    """
)


@needs_glibc
def test_memory_a_burst_freed_goes_back_to_the_system() -> None:
    run = subprocess.run([sys.executable, "-c", BURST], capture_output=True, text=True, timeout=60, check=True)
    before, after = (float(figure) for figure in run.stdout.split())
    assert before - after > 50, (before, after)


async def test_the_periodic_trim_runs_every_interval_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    task = asyncio.create_task(memory.give_back_periodically(0.01))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) >= 3 and set(calls) == {0}
    settled = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == settled


async def test_no_trim_when_turned_off_or_not_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    await asyncio.wait_for(memory.give_back_periodically(0), timeout=1)  # returns at once: never trims
    monkeypatch.setattr(memory, "MALLOC_TRIM", None)
    await asyncio.wait_for(memory.give_back_periodically(0.01), timeout=1)
    assert not memory.give_back_freed_memory()
    assert calls == []
