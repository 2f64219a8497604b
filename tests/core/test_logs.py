"""JSON logs: every line an object, runs' lines carry their ids, and no personal data or secret in any.

The flow test runs a lead a dealer refuses, a lead support assigns and an order with a buyer's data,
with the worker as its own process (its logging set up as in production) and the API in process, and
scans every line both wrote. The API's own process is started too: its ``api`` logger reaches the output.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from contracts.leads import AssignDealerInput
from core import memory
from core.logs import JsonFormatter, configure_logging
from core.settings import Settings
from tests.hub import WEBHOOK_SECRET, Hub, environment_of, running_hub, start_worker_process
from tests.support import free_port, until_ready
from tests.workflows.test_encryption_at_rest import BUYER, LEAD, run_lead_rejected_once, run_order
from workflows.lead_distribution import LeadDistributionWorkflow

ROOT = Path(__file__).resolve().parents[2]
RUN_LOGGERS = ("temporalio.workflow", "temporalio.activity")  # lines about one run, from the SDK's adapters


def test_a_line_carries_the_workflow_it_was_logged_in() -> None:
    record = logging.makeLogRecord(
        {
            "name": "temporalio.workflow",
            "levelname": "WARNING",
            "msg": "dealer %s did not take the lead",
            "args": ("rest-sp-a",),
            "temporal_workflow": {
                "workflow_id": "lead-1",
                "run_id": "r-1",
                "workflow_type": "LeadDistributionWorkflow",
                "task_queue": "leads",
                "namespace": "default",
                "attempt": 1,
            },
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "dealer rest-sp-a did not take the lead"
    assert (line["workflow_id"], line["run_id"], line["workflow_type"]) == (
        "lead-1",
        "r-1",
        "LeadDistributionWorkflow",
    )
    assert line["level"] == "WARNING" and line["logger"] == "temporalio.workflow"


async def test_a_plain_logger_in_an_activity_gets_the_activity() -> None:
    answer = "partner said: ana@example.com is not valid"
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)  # formats as the line is logged, inside the activity
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs.activity")
    logger.addHandler(handler)
    try:

        async def land() -> None:
            logger.warning("appending to a new stream")
            try:
                raise RuntimeError(answer)  # the stack shows this line of code, not the answer
            except RuntimeError:
                logger.exception("append failed")

        await ActivityEnvironment().run(land)
        logger.error("outside any run", exc_info=RuntimeError("our own words"))
    finally:
        logger.removeHandler(handler)
    first, failed, outside = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert (first["activity_type"], first["workflow_id"], first["run_id"]) == ("unknown", "test", "test-run")
    # Inside a run the exception's message stays out (the run's history keeps it); its type and stack stay.
    assert failed["error"] == "RuntimeError"
    assert "ana@example.com" not in json.dumps(failed)
    assert "in land" in failed["traceback"]
    assert "workflow_id" not in outside and "our own words" in outside["traceback"]


async def test_flow_logs_carry_ids_and_no_personal_data_or_secrets(
    temporal_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    tmp_path: Path,
) -> None:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, worker_metrics_port=0, **warehouse_settings
    ) as hub:
        worker_log = tmp_path / "worker.log"
        worker = start_worker_process({**os.environ, **environment_of(hub.settings)}, worker_log)
        try:
            with captured_logs() as api_log:
                await run_lead_rejected_once(hub)
                await run_lead_assigned_by_support(hub)
                await run_order(hub)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    worker_lines = [line for line in worker_log.read_text().splitlines() if line.strip()]
    lines = worker_lines + api_log.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object

    # The flows above ran in a worker process on its default event loop, handing freed memory back.
    assert any(re.fullmatch(r"worker \(\w+\) runs on uvloop's event loop", r["message"]) for r in records)
    if memory.MALLOC_TRIM is not None:
        trims = "hands memory freed by bursts of work back to the system every 60 s"
        assert any(json.loads(line)["message"] == trims for line in worker_lines)

    run_lines = [record for record in records if record["logger"] in RUN_LOGGERS]
    assert run_lines, "no line about a run"
    for record in run_lines:
        assert record.get("workflow_id") and record.get("run_id"), record
    assert any(record.get("activity_type") == "deliver_lead" for record in run_lines)
    assert any(record["workflow_id"].startswith("lead-") for record in run_lines)
    assert any("did not take the lead" in record["message"] for record in run_lines)

    text = "\n".join(lines)
    leaked = [value for value in personal_data() + secrets(hub.settings) if readable(value, text)]
    assert not leaked, f"the logs show {leaked}"


def test_the_api_process_logs_its_own_lines_as_json(tmp_path: Path) -> None:
    """``python -m api``: uvicorn's lines and the ``api`` logger's, as JSON (a 503 while Temporal is away)."""
    port = free_port()
    env = {
        **os.environ,
        "HUB_ENVIRONMENT": "test",
        "HUB_STATE_DIR": str(tmp_path),
        "HUB_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody there
        "HUB_ZOHO_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HUB_WEBHOOK_ACK_TIMEOUT_SECONDS": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    output = tmp_path / "api.log"
    with output.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port)],
            cwd=tmp_path,  # no stray .env
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        until_ready(lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, api, output, timeout=30)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/zoho/leads",
            data={"lead_id": "5725767000000412001"},
            headers={Settings().zoho_webhook_secret_header: WEBHOOK_SECRET},
            timeout=10,
        )
        assert answer.status_code == 503
    finally:
        api.terminate()
        api.wait(timeout=30)
    records = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    assert any(r["logger"] == "api" and r["message"].startswith("event not made durable") for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)


async def run_lead_assigned_by_support(hub: Hub) -> None:
    """A lead no dealer covers: it waits, and support assigns it (the workflow logs who did)."""
    lead_id = await hub.create_lead(**{**LEAD, "State": "BA", "City": "Salvador"})
    assert (await hub.post_webhook(lead_id)).status_code == 202
    await hub.wait_for_awaiting(lead_id)
    await hub.handle(lead_id).execute_update(
        LeadDistributionWorkflow.assign_dealer, AssignDealerInput("rest-mg", assigned_by="support-ana")
    )
    await hub.wait_for_status(lead_id, "delivered")


def personal_data() -> list[str]:
    values = set(LEAD.values()) - {"SP", "Campinas"} | set(BUYER.values())
    digits = {"".join(ch for ch in value if ch.isdigit()) for value in (LEAD["CPF"], LEAD["Mobile"])}
    return sorted(values | digits)


def secrets(settings: Settings) -> list[str]:
    """Every secret the hub holds: settings' secret values, dealer keys, payload keys."""
    values = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
        elif name in ("dealer_api_keys", "payload_keys"):
            values += [each.get_secret_value() for each in value.values()]
    return [value for value in values if len(value) >= 6]


def readable(value: str, text: str) -> bool:
    """Whether ``value`` appears as written or JSON-escaped (``\\u00e9``)."""
    return value in text or json.dumps(value)[1:-1] in text


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """This process's log lines (the API in process), formatted as the processes format them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def http_status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_debug_logs_leave_out_what_zeep_sends_a_soap_dealer() -> None:
    """At HUB_LOG_LEVEL=DEBUG zeep logs each SOAP request whole: a lead's name, e-mail and phone. It is
    held at WARNING with the other libraries that log every call."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    quiet = {name: logging.getLogger(name).level for name in ("zeep", "httpx")}
    stream = io.StringIO()
    try:
        configure_logging("DEBUG", stream)
        logging.getLogger("zeep.transports").debug(
            "HTTP Post to https://dealer.example/soap: <Email>ana@x.br"
        )
        logging.getLogger("integrations").debug("a line of the hub's own")
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["logger"] for line in lines] == ["integrations"]
