"""A dbt build's child process dies with its worker, however the worker dies; its output is read whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db.leases import Held
from warehouse.dbt import SUMMARY_PREFIX
from warehouse.dbt_child import DIES_WITH_WORKER, run_child

ROOT = Path(__file__).resolve().parents[2]
# A worker as far as its build goes: it starts a child as the dbt activity does, then waits.
WORKER = """
import asyncio, sys
from warehouse.dbt_child import DIES_WITH_WORKER

async def main() -> None:
    command = (sys.executable, "-c", "import time; time.sleep(120)")
    child = await asyncio.create_subprocess_exec(*DIES_WITH_WORKER, *command)
    print(child.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def became_the_build(pid: int) -> bool:
    """Whether the child runs the build's command now, no longer setpriv."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(sys.executable.encode())
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not DIES_WITH_WORKER, reason="setpriv (util-linux) is not installed")
def test_a_build_dies_with_a_worker_killed_outright() -> None:
    """SIGKILL (the OOM killer, say) runs none of the worker's cleanup: the kernel ends the build, so no
    orphaned build goes on beside the one Temporal's retry starts on another worker."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True, env=environment
    )
    try:
        assert worker.stdout is not None
        build = int(worker.stdout.readline())
        assert running(build)
        # setpriv arms the signal, then becomes the build: kill the worker once it has (a worker killed
        # within that instant of starting a build is a race no parent-death signal closes).
        started = time.monotonic() + 10
        while not became_the_build(build) and time.monotonic() < started:
            time.sleep(0.01)
        assert became_the_build(build)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while running(build) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(build), "the build outlived its worker"
    finally:
        worker.kill()


async def test_the_childs_output_is_read_whole_and_echoed_line_by_line() -> None:
    # dbt's lines reach the holder as they come (hub dbt build prints them), the summary line is the
    # holder's to read, and a line longer than asyncio's line limit (64 KiB) is read like any other.
    long_line = "x" * 200_000
    script = f"print('START model'); print('x' * 200_000); print({SUMMARY_PREFIX!r} + '{{}}', end='')"
    echoed: list[str] = []

    async def echo(line: str) -> None:
        echoed.append(line)

    output = await run_child([sys.executable, "-c", script], dict(os.environ), Held(), echo)

    assert echoed == ["START model", long_line]
    assert output.decode().endswith(SUMMARY_PREFIX + "{}") and long_line in output.decode()
