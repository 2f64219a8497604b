"""The ``hub`` entry point: help and usage need no settings; settings that do not hold are named, never
shown (some are secrets)."""

from __future__ import annotations

import pytest

from cli.hub import main
from core.settings import get_settings


@pytest.fixture
def production_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HUB_ZOHO_WEBHOOK_SECRET", "s3cr3t-value-never-printed")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_help_needs_no_settings(production_without_secrets: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--help"])
    assert ended.value.code == 0
    assert "hub leads redrive" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ended:
        main(["backfill", "orders", "--help"])
    assert ended.value.code == 0
    assert "HUB_VTEX_BACKFILL_REQUESTS_PER_SECOND" in capsys.readouterr().out


def test_settings_that_do_not_hold_are_named_not_shown(
    production_without_secrets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["parked", "list"])
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("hub: the settings are not valid: ")
    assert "Traceback" not in err and "s3cr3t-value-never-printed" not in err


def test_a_setting_that_cannot_be_read_is_named_not_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    malformed = '{"dealer-sp-centro": "s3cr3t-value-never-printed'  # no closing quote nor brace
    monkeypatch.setenv("HUB_DEALER_WEBHOOK_PREVIOUS_SECRETS", malformed)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as ended:
            main(["parked", "list"])
    finally:
        get_settings.cache_clear()
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("hub: the settings are not valid: ") and "dealer_webhook_previous_secrets" in err
    assert "Traceback" not in err and "s3cr3t-value-never-printed" not in err
