"""The dashboard and the alert rules against Debian's Prometheus: every panel's query returns data.

A hub runs (API and simulators in process, the worker as its own process with its metrics endpoint) and
goes through a short day: leads delivered, one refused by a dealer, two left to support (one then
terminated), an order through its states, an invalid order, both syncs, a hook configuration that
fails, and a dbt build. Prometheus scrapes the API and the worker every second with the compose
stack's configuration (targets moved; the API wants the compose stack's metrics token, which the scrape
sends from its credentials file), and each query of ``deploy/grafana`` must return a number.
``promtool`` checks the configuration and the rules and runs their unit tests (``alerts_test.yml``).
The tests skip, saying so, where Prometheus is not installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from devstack import prometheus
from tests.hub import Hub, environment_of, running_hub, start_worker_process
from tests.support import eventually, free_port, until_ready
from tests.workflows.test_vtex_catalog_sync import start_sync as start_catalog_sync
from tests.workflows.test_vtex_customer_sync import start_sync as start_customer_sync
from tests.workflows.test_vtex_order import LIFECYCLE
from workflows.vtex_hook_config import VtexHookConfigInput, VtexHookConfigWorkflow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "integrations-hub.json"
METRICS_TOKEN = (RULES / "api-metrics-token").read_text(encoding="utf-8").strip()
STORE = {"vtex_catalog_skus": 40, "vtex_customers": 30}
# What Grafana fills in: a rate window and the dashboard's range, both covering the whole test.
VARIABLES = {"$__rate_interval": "5m", "$__range": "10m"}
# The dbt build the day asks for is the last to report: a whole build on the emulator takes minutes on a
# loaded machine.
DATA_TIMEOUT_SECONDS = 300.0

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
needs_prometheus = pytest.mark.skipif(
    prometheus.binary() is None, reason="prometheus not installed (Debian: apt-get install prometheus)"
)


def promtool(*args: str) -> str:
    run = subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@needs_promtool
def test_configuration_and_rules_are_valid_and_their_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


@needs_promtool
def test_rule_tests_can_fail(tmp_path: Path) -> None:
    """The rules' tests hold the thresholds: a laxer rule fails them."""
    for name in ("prometheus.yml", "alerts_test.yml"):
        shutil.copy(RULES / name, tmp_path / name)
    rules = (RULES / "alerts.yml").read_text()
    lax = rules.replace('{status="awaiting_assignment"}) > 10', '{status="awaiting_assignment"}) > 20')
    assert lax != rules
    (tmp_path / "alerts.yml").write_text(lax)
    run = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "HubLeadsWaitingForAssignment" in run.stdout + run.stderr


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, Grafana's variables filled in."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def test_dashboard_queries_fill_every_variable() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 25
    assert not [expr for _, expr in queries if "$" in expr]


@needs_prometheus
@pytest.mark.timeout(600)  # the day, then up to DATA_TIMEOUT_SECONDS for the dbt build to report
async def test_every_dashboard_query_returns_data(
    temporal_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    tmp_path: Path,
) -> None:
    worker_port = free_port()
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        worker=False,
        simulator=STORE,
        dbt_builds_enabled=True,
        dbt_orders_build_interval_seconds=1,
        worker_metrics_port=worker_port,
        worker_metrics_poll_seconds=1,
        assign_dealer_deadline_seconds=3600,
        metrics_token=METRICS_TOKEN,
        **warehouse_settings,
    ) as hub:
        api_port = int(hub.api_url.rsplit(":", 1)[1])
        env = {**os.environ, **environment_of(hub.settings)}
        with (
            worker_process(env, tmp_path / "worker.log", worker_port),
            prometheus_server(tmp_path, api_port, worker_port) as prometheus_url,
        ):
            await both_targets_scraped(prometheus_url)
            await a_short_day(hub)
            missing = await queries_without_data(prometheus_url)
            assert not missing, "panels without data:\n" + "\n".join(missing) + dbt_lines(tmp_path)
            alerts = await rule_health(prometheus_url)
            assert alerts and all(health == "ok" for health in alerts.values()), alerts


async def a_short_day(hub: Hub) -> None:
    """Leads, orders, an invalid order, both syncs, a failed flow, and the dbt build they ask for.

    Leads come in two rounds a few scrapes apart: a dealer's series appear with its first delivery,
    and ``rate()`` needs a second one to see an increase.
    """
    catalog = await start_catalog_sync(hub, page_size=20)
    customers = await start_customer_sync(hub, page_size=10)
    await hub.fault(target="rest-sp-a", reject=True)  # refused by the first dealer, taken by the next
    waiting = []
    for _ in range(2):
        delivered = await hub.create_lead(State="SP", City="Campinas")
        waiting.append(await hub.create_lead(State="BA", City="Salvador"))  # no dealer covers Bahia
        for lead_id in (delivered, waiting[-1]):
            assert (await hub.post_webhook(lead_id)).status_code == 202
        order_id = await hub.create_order()
        await hub.move_order(order_id, *LIFECYCLE)
        await hub.wait_for_status(delivered, "delivered")
        await hub.wait_for_awaiting(waiting[-1])
        await asyncio.sleep(3)
    await hub.handle(waiting[1]).terminate("support closed it")
    invalid = await hub.create_order(value=-100)
    await hub.move_order(invalid, "payment-approved")

    # A hook address VTEX's ping cannot reach: the configuration is refused for good, the run fails.
    with pytest.raises(WorkflowFailureError):
        await hub.client.execute_workflow(
            VtexHookConfigWorkflow.run,
            VtexHookConfigInput(
                hook_url=f"{hub.api_url}/no-such-hook", api_task_queue=hub.settings.vtex_api_task_queue
            ),
            id=f"hook-config-{uuid.uuid4().hex[:8]}",
            task_queue=hub.settings.vtex_orders_task_queue,
            execution_timeout=timedelta(minutes=1),
        )
    await catalog.result()
    await customers.result()


async def both_targets_scraped(prometheus_url: str) -> None:
    """Wait for the first scrapes (Prometheus starts its scrape loops a few seconds after it is ready)."""
    async with httpx.AsyncClient(base_url=prometheus_url, timeout=10) as http:

        async def up() -> bool:
            body = (await http.get("/api/v1/query", params={"query": "up == 1"})).json()
            return {sample["metric"]["job"] for sample in body["data"]["result"]} == {"hub-api", "hub-worker"}

        await eventually(up, timeout=30, interval=0.5)


async def queries_without_data(prometheus_url: str) -> list[str]:
    """Poll until every dashboard query returns a number; then the ones that still do not."""
    queries = dashboard_queries()
    deadline = time.monotonic() + DATA_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=prometheus_url, timeout=10) as http:
        while True:
            missing = [f"{title}: {expr}" for title, expr in queries if not await has_number(http, expr)]
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(2)


def dbt_lines(tmp_path: Path) -> str:
    """What the worker logged of its dbt builds (none passed: still running, or failed, and why)."""
    lines = (tmp_path / "worker.log").read_text(errors="replace").splitlines()
    return "\nthe worker's dbt lines:\n" + "\n".join(line for line in lines if "dbt" in line)[-4000:]


async def has_number(http: httpx.AsyncClient, expr: str) -> bool:
    response = await http.get("/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    values = [float(sample["value"][1]) for sample in body["data"]["result"]]
    return any(math.isfinite(value) for value in values)


async def rule_health(prometheus_url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=prometheus_url, timeout=10) as http:
        groups = (await http.get("/api/v1/rules")).json()["data"]["groups"]
    return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}


@contextmanager
def worker_process(env: dict[str, str], log: Path, port: int) -> Iterator[None]:
    worker = start_worker_process(env, log)
    try:
        until_ready(lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), worker, log)
        yield
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


@contextmanager
def prometheus_server(tmp_path: Path, api_port: int, worker_port: int) -> Iterator[str]:
    """Debian's Prometheus with the compose configuration, scraping this hub every second."""
    binary = prometheus.binary()
    assert binary is not None
    config = prometheus.write_config(
        tmp_path / "prometheus.yml", prometheus.local_config(api_port, [worker_port], scrape_interval="1s")
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            prometheus.command(binary, config, tmp_path / "prometheus-data", port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        until_ready(lambda: http_ok(f"{url}/-/ready"), server, log)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
