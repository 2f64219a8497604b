"""The workers' event loop, uvloop against asyncio's own, side by side in one run (Linux only).

    python3 dev.py up                      # another terminal (a fresh var/)
    .venv/bin/python bench/loops.py --count 500 --rate 50

Starts a second ``flows`` worker beside the stack's, with the same settings but the other event loop
(``HUB_WORKER_EVENT_LOOP``), runs ``bench/leads.py`` (its lead phase), and prints for each worker the
CPU it used, the tasks it ran (activities, local activities and workflow tasks, from its SDK metrics)
and its CPU per task. Temporal hands the tasks of one task queue to both workers' polls alike, so both
get about half of the same work, on the same machine at the same moment: the ratio compares like with
like on a machine whose speed varies from one minute to the next. Then it stops the second worker.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import hub_processes  # noqa: E402
from core.settings import Settings  # noqa: E402
from workers.main import free_loopback_port  # noqa: E402

# The SDK's counts of what a worker ran, summed over task queues and types.
TASKS = {
    "temporal_activity_execution_latency_count": "activities",
    "temporal_local_activity_execution_latency_count": "local activities",
    "temporal_workflow_task_execution_latency_count": "workflow tasks",
}
OTHER = {"uvloop": "asyncio", "asyncio": "uvloop"}


@dataclass
class Worker:
    pid: int
    loop: str
    metrics_port: int

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

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


def stack_worker() -> tuple[Worker, dict[str, str]]:
    flows = [process for process in hub_processes() if process.kind in ("worker flows", "worker all")]
    if len(flows) != 1:
        sys.exit(f"expected one flows (or all) worker of a running stack, found {len(flows)}")
    env = environment(flows[0].pid)
    loop = env.get("HUB_WORKER_EVENT_LOOP", Settings.model_fields["worker_event_loop"].default)
    port = int(env.get("HUB_WORKER_METRICS_PORT", Settings.model_fields["worker_metrics_port"].default))
    if not port:
        sys.exit("the stack's worker serves no metrics (HUB_WORKER_METRICS_PORT=0)")
    return Worker(flows[0].pid, loop, port), env


def start_second(env: dict[str, str], loop: str, log: Path) -> tuple[subprocess.Popen[bytes], Worker]:
    port = free_loopback_port()
    env = {**env, "HUB_WORKER_EVENT_LOOP": loop, "HUB_WORKER_METRICS_PORT": str(port)}
    with log.open("wb") as out:
        command = [sys.executable, "-m", "workers.main", "--role", "flows"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while b"polling leads" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"the second worker did not start polling: see {log}")
        time.sleep(0.5)
    return process, Worker(process.pid, loop, port)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500, help="leads to send (bench/leads.py --count)")
    parser.add_argument("--rate", type=float, default=50, help="webhooks a second (bench/leads.py --rate)")
    args = parser.parse_args()
    first, env = stack_worker()
    log = ROOT / "var" / "logs" / "bench-loops-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process, second = start_second(env, OTHER[first.loop], log)
    workers = (first, second)
    try:
        before = [(worker.cpu_seconds(), worker.tasks()) for worker in workers]
        leads = [sys.executable, "bench/leads.py", "--count", str(args.count), "--rate", str(args.rate)]
        subprocess.run([*leads, "--no-skeleton"], cwd=ROOT, check=True)
        after = [(worker.cpu_seconds(), worker.tasks()) for worker in workers]
    finally:
        process.send_signal(signal.SIGTERM)
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
