"""Where the machine's CPU went during a benchmark window, by local-stack process (Linux /proc only).

    window = CpuWindow.start()
    ...                                  # the measured work
    window.print()                       # CPU seconds and share of all cores, per process kind

Processes that ended inside the window (a dbt build, say) are not counted by name: the machine's
total is, so their time is in the "idle, or ended" line.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.memory import Proc, kind_of, processes

TICKS = os.sysconf("SC_CLK_TCK")
# Local-stack processes that are not the hub's own, by a word of their command line.
OTHERS = {b"temporal": "temporal server", b"devstack.bqemulator_main": "bigquery emulator"}


def kind(proc: Proc, supervisors: set[int]) -> str:
    if (found := kind_of(proc, supervisors)) is not None:
        return found
    if proc.argv[1:3] == [b"-m", b"simulators"]:
        return "simulators"
    if proc.pid == os.getpid() or any(b"bench/" in arg for arg in proc.argv[:3]):
        return "benchmark"
    for word, name in OTHERS.items():
        if any(arg.endswith(word) for arg in proc.argv[:3]):
            return name
    return "other processes"


def process_ticks() -> Counter[str]:
    """CPU ticks (user + system) each kind of process used since it started."""
    procs = processes()
    supervisors = {proc.pid for proc in procs if proc.argv[1:3] == [b"-m", b"api"]}
    ticks: Counter[str] = Counter()
    for proc in procs:
        try:
            ticks[f"{kind(proc, supervisors)}@{proc.pid}"] = cpu_ticks(proc.pid)
        except OSError:
            continue
    return ticks


def cpu_ticks(pid: int) -> int:
    """CPU ticks (user + system) the process used since it started."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> int:
    """All CPU ticks of the machine (every core, busy or idle) since boot."""
    return sum(int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:])


@dataclass
class CpuWindow:
    started: float
    machine: int
    ticks: Counter[str]

    @classmethod
    def start(cls) -> CpuWindow:
        return cls(time.perf_counter(), machine_ticks(), process_ticks())

    def shares(self) -> tuple[float, dict[str, float]]:
        """Seconds of the window, and CPU seconds per kind (a process started meanwhile counts whole)."""
        now = process_ticks()
        used: Counter[str] = Counter()
        for key, ticks in now.items():
            used[key.split("@")[0]] += ticks - self.ticks.get(key, 0)
        busy_total = machine_ticks() - self.machine
        idle = busy_total - sum(used.values())
        seconds = {name: ticks / TICKS for name, ticks in used.items() if ticks > 0}
        seconds["idle, or ended"] = max(idle, 0) / TICKS
        return time.perf_counter() - self.started, seconds

    def print(self, per: tuple[int, str] | None = None) -> None:
        """The window's CPU per process kind; with ``per=(count, "lead")`` also milliseconds per lead."""
        print_shares(*self.shares(), per=per)


def print_shares(elapsed: float, seconds: dict[str, float], per: tuple[int, str] | None = None) -> None:
    capacity = elapsed * (os.cpu_count() or 1)
    print(f"cpu over {elapsed:.1f} s on {os.cpu_count()} cores ({capacity:.0f} core-seconds):")
    for name, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        each = f"   {spent / per[0] * 1000:7.1f} ms per {per[1]}" if per and per[0] else ""
        print(f"  {name:<20} {spent:7.1f} s   {spent / capacity:6.1%}{each}")
