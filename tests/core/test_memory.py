"""Freed memory goes back to the system: what glibc keeps after a burst, ``malloc_trim`` hands back."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys
import textwrap

import httpx
import pytest

from api.app import create_app
from core import memory
from core.settings import Settings
from tests.support import eventually, free_port, serve

on_glibc = platform.libc_ver()[0] == "glibc"

# In a fresh interpreter: 100 MiB of blocks malloc serves (larger than Python's own small-object
# allocator takes), all freed but the last, which pins the heap's top so glibc cannot shrink it by itself.
BURST = textwrap.dedent(
    """
    import os
    from core.memory import give_back_freed_memory

    def resident_mib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    blocks = [bytes(2048) for _ in range(50_000)]
    pinned = blocks[-1]
    del blocks
    before = resident_mib()
    assert give_back_freed_memory()
    print(before, resident_mib())
    """
)


class Trims:
    """Stands in for ``malloc_trim``, counting its calls."""

    def __init__(self) -> None:
        self.pads: list[int] = []

    def __call__(self, pad: int) -> int:
        self.pads.append(pad)
        return 1

    async def at_least(self, calls: int) -> None:
        async def enough() -> bool:
            return len(self.pads) >= calls

        await eventually(enough, timeout=10, interval=0.01)


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> Trims:
    counter = Trims()
    monkeypatch.setattr(memory, "MALLOC_TRIM", counter)
    return counter


@pytest.mark.skipif(not on_glibc, reason="malloc_trim is glibc's")
def test_memory_a_burst_freed_goes_back_to_the_system() -> None:
    assert memory.MALLOC_TRIM is not None  # found wherever the C library is glibc
    run = subprocess.run([sys.executable, "-c", BURST], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    before, after = (float(figure) for figure in run.stdout.split())
    assert before - after > 50, (before, after)


async def test_the_periodic_trim_runs_every_interval_until_cancelled(trims: Trims) -> None:
    task = asyncio.create_task(memory.give_back_periodically(0.01))
    await trims.at_least(3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(trims.pads) == {0}  # all of every arena's free pages, keeping no padding
    settled = len(trims.pads)
    await asyncio.sleep(0.05)
    assert len(trims.pads) == settled


async def test_no_trim_when_turned_off_or_not_glibc(trims: Trims, monkeypatch: pytest.MonkeyPatch) -> None:
    await asyncio.wait_for(memory.give_back_periodically(0), timeout=1)  # returns at once: never trims
    monkeypatch.setattr(memory, "MALLOC_TRIM", None)
    await asyncio.wait_for(memory.give_back_periodically(0.01), timeout=1)
    assert not memory.give_back_freed_memory()
    assert trims.pads == []


async def test_the_api_trims_while_it_serves(trims: Trims, sqlite_url: str) -> None:
    settings = Settings(
        environment="test",
        database_url=sqlite_url,
        temporal_address=f"127.0.0.1:{free_port()}",  # connected lazily: not needed to serve /healthz
        memory_trim_seconds=0.01,
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/healthz")).status_code == 200
        await trims.at_least(2)
