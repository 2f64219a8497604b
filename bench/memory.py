"""Resident memory of the local stack's hub processes, read from /proc (Linux only).

Each process is named by what it serves: each worker by its ``--role``; the API by its uvicorn
processes (``api``), which the supervisor (``api supervisor``, ``python -m api``) starts beside
multiprocessing's resource tracker (``api resource tracker``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORKER_ROLES = {b"flows": "worker flows", b"warehouse": "worker warehouse", b"all": "worker all"}


@dataclass
class ProcessMemory:
    pid: int
    kind: str
    rss_mib: float
    peak_mib: float
    threads: int  # each holds its stack; a worker's pool of workflow task threads grows with its load


@dataclass
class Proc:
    pid: int
    parent: int
    argv: list[bytes]
    rss_mib: float
    peak_mib: float
    threads: int


def processes() -> list[Proc]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\x00")
            status = dict(
                line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
            )
        except OSError:
            continue  # it ended meanwhile
        rss, peak = (mib(status.get(name, "")) for name in ("VmRSS", "VmHWM"))
        threads = int(status.get("Threads", "0"))
        found.append(Proc(int(proc.name), int(status.get("PPid", "0")), argv, rss, peak, threads))
    return found


def mib(value: str) -> float:
    return float(value.split()[0]) / 1024 if value.strip() else 0.0


def kind_of(proc: Proc, supervisors: set[int]) -> str | None:
    argv = proc.argv
    if b"workers.main" in argv:
        role = argv[argv.index(b"--role") + 1] if b"--role" in argv[:-1] else b"all"
        return WORKER_ROLES.get(role, "worker")
    if proc.pid in supervisors:
        return "api supervisor"
    if proc.parent in supervisors:
        # Besides its uvicorn processes the supervisor starts multiprocessing's resource tracker (13 MiB),
        # which serves no request.
        return "api resource tracker" if any(b"resource_tracker" in arg for arg in argv) else "api"
    return None


def hub_processes() -> list[ProcessMemory]:
    """Every running hub process with its resident (VmRSS) and peak resident (VmHWM) memory, and its
    threads."""
    procs = processes()
    supervisors = {proc.pid for proc in procs if proc.argv[1:3] == [b"-m", b"api"]}
    found = [
        ProcessMemory(proc.pid, kind, proc.rss_mib, proc.peak_mib, proc.threads)
        for proc in procs
        if (kind := kind_of(proc, supervisors)) is not None
    ]
    return sorted(found, key=lambda process: (process.kind, process.pid))


def print_memory() -> None:
    found = hub_processes()
    if not found:
        print("memory                    (no hub process found)")
    for process in found:
        print(
            f"memory {process.kind:<20} pid {process.pid:<7} resident {process.rss_mib:4.0f} MiB"
            f"   peak {process.peak_mib:4.0f} MiB"
        )
