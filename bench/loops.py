"""The workers' event loop, uvloop against asyncio's own, side by side in one run (Linux only).

    python3 dev.py up                      # another terminal (a fresh var/)
    .venv/bin/python bench/loops.py --count 500 --rate 50

Starts two more ``flows`` workers beside the stack's, with its settings, one on each event loop
(``HUB_WORKER_EVENT_LOOP``); sends a first batch of leads that is not measured (each new worker builds
its clients, caches and connections), then runs ``bench/leads.py`` (its lead phase) and prints, for each
of the two, the CPU it used, the tasks it ran (activities, local activities and workflow tasks, from its
SDK metrics) and its CPU per task. Temporal hands a queue's tasks to all its workers' polls alike, so
the two get about the same share of the same work, on the same machine at the same moment: the ratio
compares like with like on a machine whose speed varies from one minute to the next. Then it stops them.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu import TICKS, cpu_ticks  # noqa: E402
from bench.memory import hub_processes  # noqa: E402
from workers.main import free_loopback_port  # noqa: E402

# The SDK's counts of what a worker ran, summed over task queues and types.
TASKS = {
    "temporal_activity_execution_latency_count": "activities",
    "temporal_local_activity_execution_latency_count": "local activities",
    "temporal_workflow_task_execution_latency_count": "workflow tasks",
}


@dataclass
class Worker:
    pid: int
    loop: str
    metrics_port: int

    def cpu_seconds(self) -> float:
        return cpu_ticks(self.pid) / TICKS

    def tasks(self) -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read()
        counts = dict.fromkeys(TASKS.values(), 0.0)
        for line in text.decode().splitlines():
            if (found := re.match(r"(\w+)\{.*\} (\S+)$", line)) and found.group(1) in TASKS:
                counts[TASKS[found.group(1)]] += float(found.group(2))
        return counts


def environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\x00")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def stack_worker() -> dict[str, str]:
    """The settings of the stack's ``flows`` worker (its environment)."""
    flows = [process for process in hub_processes() if process.kind == "worker flows"]
    if len(flows) != 1:
        sys.exit(f"expected the stack's one flows worker (python3 dev.py up), found {len(flows)}")
    return environment(flows[0].pid)


def loop_of(pid: int) -> str:
    """The event loop a worker runs on: uvloop's where it loaded uvloop's loop (whatever it was asked)."""
    return "uvloop" if "/uvloop/loop." in Path(f"/proc/{pid}/maps").read_text() else "asyncio"


def start_worker(env: dict[str, str], loop: str, log: Path) -> tuple[subprocess.Popen[bytes], Worker]:
    port = free_loopback_port()
    env = {**env, "HUB_WORKER_EVENT_LOOP": loop, "HUB_WORKER_METRICS_PORT": str(port)}
    with log.open("wb") as out:
        command = [sys.executable, "-m", "workers.main", "--role", "flows"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while b"polling leads" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"a worker did not start polling: see {log}")
        time.sleep(0.5)
    if loop_of(process.pid) != loop:
        process.kill()
        sys.exit(f"the worker asked to run on {loop} runs on {loop_of(process.pid)}: see {log}")
    return process, Worker(process.pid, loop, port)


def send_leads(count: int, rate: float, **options: Any) -> None:
    command = [sys.executable, "bench/leads.py", "--count", str(count), "--rate", str(rate), "--no-skeleton"]
    subprocess.run(command, cwd=ROOT, check=True, **options)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500, help="leads to send (bench/leads.py --count)")
    parser.add_argument("--rate", type=float, default=50, help="webhooks a second (bench/leads.py --rate)")
    parser.add_argument("--warm-up", type=int, default=100, help="leads sent first, not measured")
    args = parser.parse_args()
    env = stack_worker()
    logs = ROOT / "var" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[tuple[subprocess.Popen[bytes], Worker]] = []
    try:  # (a worker that fails to start ends the run: those started are stopped below)
        for loop in ("uvloop", "asyncio"):
            started.append(start_worker(env, loop, logs / f"bench-loops-{loop}.log"))
        workers = [worker for _, worker in started]
        print(f"warming up the new workers with {args.warm_up} leads (not measured) ...", flush=True)
        send_leads(args.warm_up, args.rate, stdout=subprocess.DEVNULL)
        before = [(worker.cpu_seconds(), worker.tasks()) for worker in workers]
        send_leads(args.count, args.rate)
        after = [(worker.cpu_seconds(), worker.tasks()) for worker in workers]
    finally:
        for process, _ in started:
            process.send_signal(signal.SIGTERM)
        for process, _ in started:
            process.wait(timeout=60)
    per_task = {}
    print()
    for worker, (cpu0, tasks0), (cpu1, tasks1) in zip(workers, before, after, strict=True):
        ran = {name: tasks1[name] - tasks0[name] for name in tasks1}
        cpu, total = cpu1 - cpu0, sum(ran.values())
        per_task[worker.loop] = 1000 * cpu / total if total else float("nan")
        counts = "  ".join(f"{name} {count:.0f}" for name, count in ran.items())
        print(f"{worker.loop:<8} worker pid {worker.pid:<7} cpu {cpu:6.1f} s  {counts}")
        print(f"{'':<8} {per_task[worker.loop]:.2f} ms of CPU per task")
    print(f"uvloop / asyncio      {per_task['uvloop'] / per_task['asyncio']:.2f} (CPU per task)")


if __name__ == "__main__":
    main()
