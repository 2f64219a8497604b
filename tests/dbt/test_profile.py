"""The BigQuery target of dbt/profiles.yml, rendered by dbt from the hub's settings."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
import yaml
from dbt.adapters.factory import load_plugin
from dbt.config.profile import Profile, read_profile
from dbt.config.renderer import ProfileRenderer
from dbt.flags import set_from_args
from dbt_common.context import set_invocation_context

import warehouse.dbt
from contracts.dbt_build import DbtBuildSummary
from core.settings import Settings
from warehouse.dbt import PROJECT_DIR, dbt_environment


def bigquery_target(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Profile:
    for name, value in dbt_environment(settings).items():
        monkeypatch.setenv(name, value)
    set_from_args(type("Args", (), {})(), {})  # type: ignore[arg-type]
    set_invocation_context(dict(os.environ))  # what env_var() reads
    load_plugin("bigquery")
    raw = read_profile(str(PROJECT_DIR))
    return Profile.from_raw_profiles(raw, "integrations_hub", ProfileRenderer({}), target_override="bigquery")


def test_a_query_billing_more_than_the_setting_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(environment="test", bigquery_endpoint="", bigquery_project="acme-analytics")
    profile = bigquery_target(monkeypatch, settings)
    assert profile.credentials.maximum_bytes_billed == 50 * 1024**3  # the default guard  # type: ignore[attr-defined]
    assert profile.credentials.database == "acme-analytics"
    custom = Settings(environment="test", bigquery_endpoint="", dbt_maximum_bytes_billed=10**9)
    assert bigquery_target(monkeypatch, custom).credentials.maximum_bytes_billed == 10**9  # type: ignore[attr-defined]


def test_every_query_is_labelled_with_its_model() -> None:
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    assert project["query-comment"] == {"job-label": True}  # dbt's comment (node_id, ...) as job labels


def test_a_build_run_by_hand_takes_its_target_and_guard_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m warehouse.dbt build --full-refresh`` run directly (the worker's child command; support
    runs ``hub dbt build``): without the build activity's environment, the profile's defaults are the
    emulator's (a fake token) and no cap on the bytes billed. The settings decide, as for the activity's
    builds, and it warns that it holds no lease."""
    for name in dbt_environment(Settings(environment="test")):
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores what main() sets
        monkeypatch.delenv(name)
    monkeypatch.setenv("HUB_DBT_TARGET", "")  # as .env.example leaves it
    monkeypatch.setenv("HUB_BIGQUERY_ENDPOINT", "")
    monkeypatch.setenv("HUB_BIGQUERY_PROJECT", "acme-analytics")
    monkeypatch.setenv("HUB_BUSINESS_TIMEZONE", "America/Manaus")
    seen: dict[str, str] = {}

    def build(*args: object) -> DbtBuildSummary:
        seen.update(os.environ)
        return DbtBuildSummary()

    monkeypatch.setattr(warehouse.dbt, "run_build", build)
    with pytest.raises(SystemExit):
        warehouse.dbt.main(["build", "--full-refresh"])
    assert (seen["HUB_DBT_TARGET"], seen["HUB_BIGQUERY_PROJECT"]) == ("bigquery", "acme-analytics")
    assert seen["HUB_DBT_MAXIMUM_BYTES_BILLED"] == str(50 * 1024**3)
    assert seen["HUB_BUSINESS_TIMEZONE"] == "America/Manaus"  # what was set stands
    warning = capsys.readouterr().err
    assert "takes no lease" in warning and "`hub dbt build`" in warning


def test_freshness_reads_from_the_start_of_the_day_a_week_back_in_utc() -> None:
    # 02:30 in São Paulo on the 8th is 05:30 UTC on the 8th: a week back is the 1st, at midnight UTC.
    local = datetime.fromisoformat("2026-12-08T02:30:00-03:00")
    assert warehouse.dbt.freshness_since(local) == "2026-12-01 00:00:00+00"
    # The literal is BigQuery's: a date, a time and an offset, which prunes bronze's days.
    assert warehouse.dbt.freshness_since(datetime(2026, 1, 3, 23, 59, tzinfo=UTC)) == "2025-12-27 00:00:00+00"
