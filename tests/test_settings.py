"""Settings: documented, safe in production, parsed the way operators write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_documents_every_setting() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if line.startswith("HUB_")}
    assert documented == {f"HUB_{name.upper()}" for name in Settings.model_fields}


def test_env_example_values_are_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("HUB_"):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url == f"sqlite:///{Path('var') / 'portal.db'}"
    assert settings.event_subscribers == []


def test_subscribers_accept_comma_list_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_EVENT_SUBSCRIBERS", "https://a.example/hook, https://b.example/hook")
    assert Settings().event_subscribers == ["https://a.example/hook", "https://b.example/hook"]
    monkeypatch.setenv("HUB_EVENT_SUBSCRIBERS", '["https://c.example/hook"]')
    assert Settings().event_subscribers == ["https://c.example/hook"]


def test_unknown_business_timezone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(business_timezone="America/Atlantis")
