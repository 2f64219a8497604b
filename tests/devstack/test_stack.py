"""``python -m devstack up`` on ports of its own: SIGTERM or SIGHUP stops every process it started.

Each test runs the whole local stack (Temporal, the BigQuery emulator, the simulators, the API in
several processes, the worker) beside any stack a developer has running on the usual ports.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from devstack import emulator, prometheus
from devstack.__main__ import DEMO_CATALOG_SKUS, parse_args, simulator_env
from devstack.stack import Ports, port_open

# Prometheus joins when Debian's binary is installed (.ci/run installs it).
PARTS = ("codec", "temporal", "bigquery", "simulators", "api", "worker-flows", "worker-warehouse") + (
    ("prometheus",) if prometheus.binary() else ()
)
PORT_COUNT = len(dataclasses.fields(Ports))
API_PROCESSES = 2
HEALTHY = "All parts healthy"
START_TIMEOUT_SECONDS = 120.0
EXIT_TIMEOUT_SECONDS = 60.0
# Below Linux's ephemeral range (32768-60999), where the stack's own outgoing connections take ports.
PORT_RANGE = (20000, 32000)


@dataclasses.dataclass
class Run:
    process: subprocess.Popen[bytes]
    ports: Ports
    state_dir: Path
    output: Path
    descendants: list[psutil.Process] = dataclasses.field(default_factory=list)  # once recorded

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def test_port_base_moves_every_port_and_none_keeps_the_usual_ones() -> None:
    assert Ports.from_base(None) == Ports()
    assert dataclasses.astuple(Ports.from_base(20000)) == tuple(range(20000, 20000 + PORT_COUNT))


def test_the_demo_reads_a_catalog_sized_for_a_demo_unless_told_otherwise() -> None:
    def catalog(*argv: str) -> dict[str, str]:
        return simulator_env(parse_args(["up", *argv]))

    assert catalog("--demo") == {"SIM_VTEX_CATALOG_SKUS": str(DEMO_CATALOG_SKUS)}
    assert catalog("--demo", "--catalog-skus", "20000") == {"SIM_VTEX_CATALOG_SKUS": "20000"}
    assert catalog() == {}  # the simulators' own default (20,000) or SIM_VTEX_CATALOG_SKUS
    assert catalog("--catalog-skus", "50") == {"SIM_VTEX_CATALOG_SKUS": "50"}
    with pytest.raises(SystemExit):
        catalog("--catalog-skus", "-1")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_stops_every_process_it_started(tmp_path: Path, signum: int) -> None:
    with devstack_up(tmp_path) as run:
        wait_for(run, HEALTHY)
        assert_prints_where_parts_listen(run)
        run.descendants = psutil.Process(run.process.pid).children(recursive=True)
        assert api_process_count(run.descendants) == API_PROCESSES
        assert ui_codec_endpoint(run.descendants) == f"http://127.0.0.1:{run.ports.codec_server}"
        assert list((run.state_dir / "api-metrics").glob("*.db")), "the API runs without multiprocess metrics"
        if "prometheus" in PARTS:
            assert_prometheus_scrapes_the_stack(run.ports)

        assert stop(run, signum) == 0, run.text()
        stopped = {line.split()[0] for line in run.text().splitlines() if line.endswith(" stopped")}
        assert stopped == set(PARTS)


def test_sigterm_while_starting_stops_the_parts_already_started(tmp_path: Path) -> None:
    with devstack_up(tmp_path) as run:
        wait_for(run, f"{'temporal':<16} healthy")  # the emulator is starting now (devstack pads names to 16)
        run.descendants = psutil.Process(run.process.pid).children(recursive=True)

        assert stop(run, signal.SIGTERM) == 0, run.text()
        assert HEALTHY not in run.text()


def stop(run: Run, signum: int) -> int:
    """Send ``signum`` to ``devstack up``, check that nothing it started outlives it; its exit code."""
    run.process.send_signal(signum)
    code = run.process.wait(timeout=EXIT_TIMEOUT_SECONDS)
    left = [f"{p.pid} {' '.join(p.cmdline())}" for p in run.descendants if still_alive(p)]
    assert not left, f"still running after {signum!r}: {left}"
    listening = [port for port in dataclasses.astuple(run.ports) if port_open(port)]
    assert not listening, f"port(s) still open after {signum!r}: {listening}"
    return code


@contextmanager
def devstack_up(tmp_path: Path) -> Iterator[Run]:
    """Start ``devstack up`` on free ports; if the test leaves it running, kill it and all it started."""
    ports = Ports.from_base(free_port_base())
    state_dir, output = tmp_path / "state", tmp_path / "up.out"
    # A developer's HUB_* variables would win over the stack's own addresses and ports.
    env = {name: value for name, value in os.environ.items() if not name.startswith("HUB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["HUB_API_PROCESSES"] = str(API_PROCESSES)
    env["PYTHONPATH"] = emulator.with_project_root()  # devstack is dev tooling, run from the checkout
    command = [sys.executable, "-m", "devstack", "up", "--port-base", str(ports.temporal)]
    with output.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--state-dir", str(state_dir)],
            cwd=tmp_path,  # no stray .env
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, killed without touching pytest's
        )
    run = Run(process, ports, state_dir, output)
    try:
        yield run
    finally:
        kill_everything(run)


def free_port_base() -> int:
    """A first port such that it and the next ones, one per part, are free on 127.0.0.1."""
    for _ in range(100):
        base = random.randrange(*PORT_RANGE)
        if all(bindable(port) for port in range(base, base + PORT_COUNT)):
            return base
    pytest.fail(f"no {PORT_COUNT} consecutive free ports in {PORT_RANGE}")


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(run: Run, text: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while text not in run.text():
        if run.process.poll() is not None:
            pytest.fail(f"devstack up exited with {run.process.returncode}:\n{run.text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} after {START_TIMEOUT_SECONDS:.0f}s:\n{run.text()}")
        time.sleep(0.1)


def assert_prints_where_parts_listen(run: Run) -> None:
    ports = run.ports
    expected = {
        "codec": f"http://127.0.0.1:{ports.codec_server} (codec server",
        "temporal": f"127.0.0.1:{ports.temporal} (Web UI http://127.0.0.1:{ports.temporal_ui})",
        "bigquery": f"http://127.0.0.1:{ports.bigquery} (",
        "simulators": f"http://127.0.0.1:{ports.simulators} (",
        "api": f"http://127.0.0.1:{ports.api} ({API_PROCESSES} processes;",
        "worker-flows": f"(metrics http://127.0.0.1:{ports.worker_metrics}/metrics)",
        "worker-warehouse": f"(metrics http://127.0.0.1:{ports.warehouse_worker_metrics}/metrics)",
        "prometheus": f"http://127.0.0.1:{ports.prometheus} (Prometheus",
    }
    healthy = {line.split()[0]: line for line in run.text().splitlines() if line.split()[1:2] == ["healthy"]}
    assert set(healthy) == set(PARTS), run.text()
    for part in PARTS:
        assert expected[part] in healthy[part], f"{part}: expected {expected[part]!r} in {healthy[part]!r}"


def assert_prometheus_scrapes_the_stack(ports: Ports) -> None:
    """The compose configuration's jobs, on this stack's ports, and its alert rules loaded."""
    base = f"http://127.0.0.1:{ports.prometheus}/api/v1"
    expected = {
        "hub-api": {f"http://127.0.0.1:{ports.api}/metrics"},
        "hub-worker": {
            f"http://127.0.0.1:{ports.worker_metrics}/metrics",
            f"http://127.0.0.1:{ports.warehouse_worker_metrics}/metrics",
        },
    }
    deadline = time.monotonic() + 30  # Prometheus hands its targets to the scrapers a few seconds in
    scraped: dict[str, set[str]] = {}
    while scraped != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        targets = httpx.get(f"{base}/targets", timeout=5).json()["data"]["activeTargets"]
        scraped = {}
        for target in targets:
            scraped.setdefault(target["labels"]["job"], set()).add(target["scrapeUrl"])
    assert scraped == expected
    groups = httpx.get(f"{base}/rules", timeout=5).json()["data"]["groups"]
    assert "HubWorkerDown" in {rule["name"] for group in groups for rule in group["rules"]}


def test_local_prometheus_configuration_is_the_compose_one_on_local_ports(tmp_path: Path) -> None:
    compose = yaml.safe_load(prometheus.CONFIG.read_text())
    local = prometheus.local_config(api_port=18000, worker_ports=[19464, 19465])
    targets = {job["job_name"]: job["static_configs"] for job in local["scrape_configs"]}
    assert targets == {
        "hub-api": [{"targets": ["127.0.0.1:18000"]}],
        "hub-worker": [
            {"targets": ["127.0.0.1:19464"], "labels": {"component": "worker-flows"}},
            {"targets": ["127.0.0.1:19465"], "labels": {"component": "worker-warehouse"}},
        ],
    }
    assert [Path(name) for name in local["rule_files"]] == [
        prometheus.CONFIG.parent / name for name in compose["rule_files"]
    ]
    assert local["global"] == compose["global"]
    credentials = {
        job["job_name"]: Path(job["authorization"]["credentials_file"])
        for job in local["scrape_configs"]
        if "authorization" in job
    }
    assert credentials == {"hub-api": prometheus.CONFIG.parent / "api-metrics-token"}  # full path, exists
    assert credentials["hub-api"].is_file()
    assert prometheus.local_config(1, [2], scrape_interval="1s")["global"]["scrape_interval"] == "1s"
    if shutil.which("promtool"):
        written = prometheus.write_config(tmp_path / "prometheus.yml", local)
        check = subprocess.run(["promtool", "check", "config", str(written)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def ui_codec_endpoint(descendants: list[psutil.Process]) -> str:
    """Where the dev server's Web UI has browsers decode payloads."""
    (server,) = [p for p in descendants if p.cmdline()[1:3] == ["server", "start-dev"]]
    command = server.cmdline()
    return command[command.index("--ui-codec-endpoint") + 1]


def api_process_count(descendants: list[psutil.Process]) -> int:
    """uvicorn's worker processes under the API's supervisor."""
    (supervisor,) = [p for p in descendants if p.cmdline()[1:3] == ["-m", "api"]]
    return sum("spawn_main" in " ".join(child.cmdline()) for child in supervisor.children())


def still_alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_everything(run: Run) -> None:
    """Kill ``devstack up``, if still running, and every process it started that is still alive.

    Its children lead process groups of their own, which killing its group would not reach.
    """
    process = run.process
    descendants = run.descendants
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGSTOP)  # frozen, it starts nothing more while we look
        with suppress(psutil.NoSuchProcess):
            descendants = descendants + psutil.Process(process.pid).children(recursive=True)
    for child in descendants:
        if still_alive(child):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            with suppress(psutil.NoSuchProcess):
                child.kill()
    if process.returncode is None:  # not reaped: its pid (the group's id) is not another's yet
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
