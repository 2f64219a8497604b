"""A dbt build's child process dies with its worker, however the worker dies; its output is read whole."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import warehouse.dbt_child
from db.leases import Held
from warehouse.dbt import SUMMARY_PREFIX
from warehouse.dbt_child import BIGQUERY_JOB_TIMEOUT, DIES_WITH_WORKER, SETTLE_AFTER_STOP, run_child
from workers.main import loop_factory, running_loop_name

T = TypeVar("T")

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


def on_loop(kind: str, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` on a new event loop of ``kind``, as a worker process would (HUB_WORKER_EVENT_LOOP):
    the child's start, stop and kill go through each loop's own subprocess handling."""

    async def checked() -> T:
        loop = asyncio.get_running_loop()
        assert running_loop_name() == kind  # no quiet fallback
        # As the worker does (workers.main): its children start with SIGINT's default handling, even in
        # a process started with SIGINT ignored (a test runner's workers, a background job).
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        try:
            return await scenario()
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    try:
        with asyncio.Runner(loop_factory=loop_factory(kind) or asyncio.new_event_loop) as runner:
            return runner.run(checked())
    finally:
        signal.signal(signal.SIGINT, previous)


# A build that logs its pid, then runs until stopped ("stubborn": ignoring SIGINT, as a build stuck in a
# call that does not return would).
CHILD = """
import os, signal, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
with open(sys.argv[1], "a") as out: out.write(f"{os.getpid()}\\n")
time.sleep(60)
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("cancels", [1, 2])
@pytest.mark.parametrize("yields", [1, 2])
def test_a_build_cancelled_while_its_child_starts_is_still_told_to_stop(
    loop: str, yields: int, cancels: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that lands while the child is being started (before its pipes are connected),
    once or again meanwhile, stops it with SIGINT like any other, so dbt can cancel its BigQuery jobs:
    the lease then waits a minute, not the jobs' time-out that a child killed outright would cost."""
    started: list[bool] = []
    spawn = asyncio.create_subprocess_exec

    async def recorded_spawn(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await spawn(*args, **kwargs)
        started.append(True)
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recorded_spawn)

    async def scenario() -> Held:
        lease = Held()
        log = tmp_path / f"child-{loop}-{yields}-{cancels}.log"
        build = asyncio.ensure_future(run_child([sys.executable, "-c", CHILD, str(log), ""], {}, lease))
        for _ in range(cancels):
            for _ in range(yields):  # the cancellation lands at a different step of the start each time
                await asyncio.sleep(0)
            assert not started, "the start ended before the cancellation"
            build.cancel()
        with pytest.raises(asyncio.CancelledError):
            await build
        assert started
        return lease

    assert on_loop(loop, scenario).lingers_for == SETTLE_AFTER_STOP


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_build_that_ignores_the_stop_is_killed_after_the_grace(
    loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse.dbt_child, "STOP_GRACE_SECONDS", 0.5)
    log = tmp_path / "child.log"

    async def scenario() -> Held:
        lease = Held()
        command = [sys.executable, "-c", CHILD, str(log), "stubborn"]
        build = asyncio.ensure_future(run_child(command, {}, lease))
        while not log.exists() or not log.read_text().endswith("\n"):  # running, SIGINT ignored
            await asyncio.sleep(0.02)
        build.cancel()
        with pytest.raises(asyncio.CancelledError):
            await build
        return lease

    lease = on_loop(loop, scenario)
    assert lease.lingers_for == BIGQUERY_JOB_TIMEOUT  # its jobs may run on until their time-out
    assert not running(int(log.read_text()))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_build_that_ends_gives_its_output_and_holds_nothing_after_it(loop: str) -> None:
    script = f"print('START model'); print({SUMMARY_PREFIX!r} + '{{}}', end='')"
    lease = Held()
    output = on_loop(loop, lambda: run_child([sys.executable, "-c", script], dict(os.environ), lease))
    assert output.decode() == "START model\n" + SUMMARY_PREFIX + "{}"
    assert lease.lingers_for.total_seconds() == 0
