"""What a failing error-level test blocks: the model it checks, found in the project dbt parses, and
what fast builds then leave out (that model and every model reading it), as dbt selects it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from dbt.cli.main import dbtRunner

from core.settings import Settings
from warehouse.dbt import PROJECT_DIR, dbt_environment, fast_build_excludes, models_under_test, summarise


def dbt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *arguments: str) -> object:
    for name, value in dbt_environment(
        Settings(environment="test", bigquery_endpoint="http://127.0.0.1:9")
    ).items():
        monkeypatch.setenv(name, value)
    common = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    common += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    outcome = dbtRunner().invoke([arguments[0], *common, *arguments[1:]])  # parses only: no connection
    assert outcome.success, outcome.exception
    return outcome.result


def test_a_key_test_blocks_its_model_and_fast_builds_leave_out_what_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    manifest = dbt(monkeypatch, tmp_path, "parse")
    tests = {node.name: node for node in manifest.nodes.values() if node.resource_type == "test"}  # type: ignore[attr-defined]
    key_test = next(node for name, node in tests.items() if name.startswith("unique_orders_order_id"))
    assert models_under_test(key_test) == ["orders"]

    def fast_models(blocked: list[str]) -> set[str]:
        listed = dbt(monkeypatch, tmp_path, "ls", "--resource-type", "model", "--output", "name", "--quiet",
                     *fast_build_excludes(blocked))  # fmt: skip
        return set(listed)  # type: ignore[call-overload]

    every = fast_models([])
    held = fast_models(["orders"])
    assert {"orders", "order_items", "profile_orders", "orders_per_profile", "customer_360"} <= every - held
    assert {"customers", "skus", "lead_status_changes", "deals"} <= held


def test_a_model_is_cleared_only_when_every_test_of_it_ran_and_passed() -> None:
    def result(test: str, model: str, status: str) -> SimpleNamespace:
        node = SimpleNamespace(
            resource_type="test", name=test, attached_node=f"model.integrations_hub.{model}"
        )
        return SimpleNamespace(node=node, status=status, message=None)

    summary = summarise(
        [
            result("unique_orders_order_id", "orders", "pass"),
            result("not_null_orders_order_id", "orders", "fail"),
            result("unique_skus_sku_id", "skus", "pass"),
            result("accepted_values_skus", "skus", "warn"),
            result("unique_customers_id", "customers", "skipped"),
        ]
    )
    assert (summary.blocked, summary.cleared) == (["orders"], ["skus"])


def test_hooks_build_nothing_but_a_failed_one_fails_the_build() -> None:
    def result(kind: str, name: str, status: str) -> SimpleNamespace:
        return SimpleNamespace(node=SimpleNamespace(resource_type=kind, name=name), status=status, message=None)

    done = summarise([result("model", "orders", "success"), result("operation", "on-run-end-0", "success")])
    assert (done.models_built, done.success) == (1, True)
    failed = summarise([result("model", "orders", "success"), result("operation", "on-run-end-0", "error")])
    assert (failed.models_built, failed.success, failed.failures) == (1, False, ["on-run-end-0: error"])
