"""A dbt build's child process under the build lease: started, read, stopped, and what it may leave.

The scheduled builds (``activities.dbt``) and support's ``hub dbt build`` (``cli.dbt``) both run
``python -m warehouse.dbt build`` as a child process while they hold the warehouse's build lease
(``db.leases``). A child still running when its holder stops (cancelled, timed out, Ctrl-C, the lease
lost) is told to stop (SIGINT: dbt cancels its models' BigQuery jobs) and killed after a grace; the
lease then ends so that the next build waits for what the stopped one may leave running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from db.leases import Held
from warehouse.dbt import SUMMARY_PREFIX, dbt_environment

if TYPE_CHECKING:
    from core.settings import Settings

# The build must not outlive its worker. A worker killed outright (SIGKILL, the OOM killer on a bare host)
# runs no ``finally``, and its orphaned build would go on beside the one Temporal's retry starts on
# another worker, both writing the same tables. setpriv (util-linux, in the image) has the kernel kill the
# child with its parent (PR_SET_PDEATHSIG). In a container the two die together anyway.
DIES_WITH_WORKER: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()
)
# The longest a BigQuery job of a build may run (dbt/profiles.yml's job_execution_timeout_seconds, the
# job's own time-out on the server): a build killed outright leaves its jobs running that long, so the
# next waits that much past its lease's end.
BIGQUERY_JOB_TIMEOUT = timedelta(seconds=600)
# A build told to stop (SIGINT) cancels the BigQuery jobs of the models it runs and exits (7 s measured on
# the emulator, the machine idle); past this it is killed.
STOP_GRACE_SECONDS = 15.0
# What a build stopped that way may leave running: a hook's query between models, a job whose cancel
# BigQuery (best effort) has not done yet. The next build waits this long.
SETTLE_AFTER_STOP = timedelta(seconds=60)
READ_SIZE = 64 * 1024

# Hands one line of dbt's output on; awaited, so a slow reader (a paused terminal) holds the child's
# output back, never the event loop that renews the lease.
Echo = Callable[[str], Awaitable[None]]


def child_environment(settings: Settings) -> dict[str, str]:
    """The child's environment: this process's, with what dbt's profile and models read set from
    ``settings``."""
    return {**os.environ, **dbt_environment(settings)}


def lease_holder(who: str) -> str:
    """A build's name in the lease row (what support reads there and in the waiting log): ``who`` runs
    it, with a token of its own (a reset or restarted workflow repeats run-less ids and attempts) and
    the host and process it runs in."""
    return f"{who} {uuid.uuid4().hex[:12]} on {socket.gethostname()}:{os.getpid()}"[:255]


class LeaseLost(Exception):
    """The build lost its lease (another holder took it, or it could not be renewed) and was stopped."""


async def run_child(
    command: list[str], environment: dict[str, str], lease: Held, echo: Echo | None = None
) -> bytes:
    """Run a build's child under ``lease``: its output once it ends (each line but the summary handed
    to ``echo`` as it comes); stopped, and ``LeaseLost`` raised, once the lease is lost. A child still
    running when this ends (cancelled, timed out, lost) is stopped, and the lease ends so that the next
    build waits for what it may leave running."""
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *DIES_WITH_WORKER,
            *command,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the holder's terminal is the holder's to handle
        )
    )
    # The child runs before its pipes are connected: a cancellation meanwhile would have the event loop
    # kill it outright, past the stop below and what the lease must then wait. So the start is let
    # finish, however often the build is cancelled meanwhile.
    cancelled = False
    while True:
        try:
            process = await asyncio.shield(starting)
            break
        except asyncio.CancelledError:
            if starting.cancelled():
                raise
            cancelled = True
        except Exception:
            if cancelled:  # no child to stop: the cancellation is what the caller must see
                raise asyncio.CancelledError from None
            raise
    build = asyncio.ensure_future(_output(process, echo))
    lost = asyncio.ensure_future(lease.lost.wait())
    try:
        if cancelled:
            raise asyncio.CancelledError
        await asyncio.wait((build, lost), return_when=asyncio.FIRST_COMPLETED)
        if build.done():
            return build.result()
        raise LeaseLost("the dbt build lost its lease and stopped")
    finally:
        lost.cancel()
        try:
            if process.returncode is None:  # cancelled, timed out or lost: it must not outlive us
                lease.lingers_for = BIGQUERY_JOB_TIMEOUT  # until it is known to have stopped when told
                if await stop(process):
                    lease.lingers_for = SETTLE_AFTER_STOP
        finally:
            build.cancel()  # (nothing when done)
        lease.lingers_for = max(lease.lingers_for, lingering(process.returncode))


async def _output(process: asyncio.subprocess.Process, echo: Echo | None) -> bytes:
    """The child's output once it exited; with ``echo``, each whole line on the way (read in chunks:
    no line is too long to read)."""
    assert process.stdout is not None
    chunks, pending = [], b""
    while chunk := await process.stdout.read(READ_SIZE):
        chunks.append(chunk)
        if echo is not None:
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                await _echo(echo, line)
    if echo is not None and pending:
        await _echo(echo, pending)
    await process.wait()
    return b"".join(chunks)


async def _echo(echo: Echo, line: bytes) -> None:
    if not line.startswith(SUMMARY_PREFIX.encode()):  # the summary is for the holder to read
        await echo(line.decode(errors="replace").rstrip("\r"))


def lingering(returncode: int | None) -> timedelta:
    """How long a build that exited so may leave BigQuery jobs running: killed by a signal (the OOM
    killer, or past the grace), until their time-out; ended by SIGINT, a minute; otherwise nothing."""
    if returncode is None or returncode >= 0:
        return timedelta(0)
    return SETTLE_AFTER_STOP if returncode == -signal.SIGINT else BIGQUERY_JOB_TIMEOUT


async def stop(process: asyncio.subprocess.Process) -> bool:
    """Stop a build: True when it exited on being told to (dbt cancels its BigQuery jobs on SIGINT),
    False when it had to be killed after STOP_GRACE_SECONDS (its jobs run on until their time-out)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        return True
    except TimeoutError:
        _kill(process)
        await process.wait()
        return False
    except BaseException:  # cancelled again meanwhile: the build still must not outlive us
        _kill(process)
        raise


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
