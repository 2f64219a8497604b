"""Settings: documented, safe in production, parsed the way operators write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.codec import LOCAL_PAYLOAD_KEY, LOCAL_PAYLOAD_KEY_ID
from core.settings import Settings
from tests.support import PRODUCTION_SETTINGS, new_key

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


def test_a_deal_batch_window_under_one_second_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Zoho's record read within the second of a move may not show that second's last move.
    monkeypatch.setenv("HUB_OPPORTUNITY_BATCH_WINDOW_SECONDS", "0.5")
    with pytest.raises(ValidationError, match="opportunity_batch_window_seconds"):
        Settings()
    assert Settings(opportunity_batch_window_seconds=1).opportunity_batch_window_seconds == 1


def test_a_worker_with_one_workflow_task_at_once_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK asks for at least two where the worker caches runs (max_concurrent_workflow_tasks' docs).
    monkeypatch.setenv("HUB_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "1")
    with pytest.raises(ValidationError, match="worker_max_concurrent_workflow_tasks"):
        Settings()
    monkeypatch.setenv("HUB_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", "2")
    assert Settings().worker_max_concurrent_workflow_tasks == 2


PRODUCTION_SECRETS = {name: value for name, value in PRODUCTION_SETTINGS.items() if name != "payload_keys"}


def test_local_runs_encrypt_with_the_local_key_without_configuration() -> None:
    settings = Settings(environment="local")
    assert settings.payload_active_key == LOCAL_PAYLOAD_KEY_ID
    assert {k: v.get_secret_value() for k, v in settings.payload_keys.items()} == {
        LOCAL_PAYLOAD_KEY_ID: LOCAL_PAYLOAD_KEY
    }


def test_production_refuses_to_run_without_payload_keys_or_with_the_local_key() -> None:
    with pytest.raises(ValidationError, match="payload_keys is empty"):
        Settings(**PRODUCTION_SECRETS)
    with pytest.raises(ValidationError, match=r"payload_keys\[mine\] is the local development key"):
        Settings(**PRODUCTION_SECRETS, payload_keys={"mine": LOCAL_PAYLOAD_KEY})
    with pytest.raises(ValidationError, match="the local development key"):
        Settings(
            **PRODUCTION_SECRETS, payload_keys={"k1": new_key(), LOCAL_PAYLOAD_KEY_ID: LOCAL_PAYLOAD_KEY}
        )
    assert Settings(**PRODUCTION_SECRETS, payload_keys={"k1": new_key()}).payload_active_key == "k1"


def test_payload_keys_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = new_key(), new_key()
    monkeypatch.setenv("HUB_PAYLOAD_KEYS", f"2025-01:{old}, 2026-01:{new}")
    monkeypatch.setenv("HUB_PAYLOAD_ACTIVE_KEY", "2026-01")
    settings = Settings()
    assert {k: v.get_secret_value() for k, v in settings.payload_keys.items()} == {
        "2025-01": old,
        "2026-01": new,
    }
    assert settings.payload_active_key == "2026-01"
    monkeypatch.setenv("HUB_PAYLOAD_KEYS", f'{{"2026-01": "{new}"}}')
    assert Settings().payload_keys["2026-01"].get_secret_value() == new


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ("a:{k},b:{k}", "", "HUB_PAYLOAD_ACTIVE_KEY must name one of the payload keys \\(a, b\\)"),
        ("a:{k}", "c", "HUB_PAYLOAD_ACTIVE_KEY must name one of the payload keys \\(a\\)"),
        ("a:not base64!", "", "payload key 'a' is not valid base64"),
        ("a:c2hvcnQ=", "", "payload key 'a' must be 32 bytes"),
        ("{k}", "", "payload keys are written id:base64key"),
    ],
)
def test_bad_payload_keys_are_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, keys: str, active: str, message: str
) -> None:
    key = new_key()
    monkeypatch.setenv("HUB_PAYLOAD_KEYS", keys.format(k=key))
    monkeypatch.setenv("HUB_PAYLOAD_ACTIVE_KEY", active)
    with pytest.raises(ValidationError, match=message) as refused:
        Settings()
    assert key not in str(refused.value)


def test_a_secret_pasted_with_a_line_break_is_taken_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token pasted (or mounted from a file) with its line break made the HTTP client refuse every
    request, quoting the token in its error, which reached the activity's failure and the logs."""
    monkeypatch.setenv("HUB_VTEX_APP_TOKEN", " vtex-token-1\n")
    monkeypatch.setenv("HUB_DEALER_API_KEYS", '{"d1": "key-1\\r\\n"}')
    monkeypatch.setenv("HUB_TEMPORAL_CLIENT_CONFIG", "true")
    monkeypatch.setenv("TEMPORAL_API_KEY", "temporal-key-1\n")  # read through Temporal's own settings
    monkeypatch.setenv("HUB_VTEX_APP_KEY", "vtexappkey-store-1 \n")
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql://hub:pw@db/hub\n")
    settings = Settings(environment="test")
    assert settings.vtex_app_token.get_secret_value() == "vtex-token-1"
    assert settings.dealer_api_keys["d1"].get_secret_value() == "key-1"
    assert settings.temporal_api_key.get_secret_value() == "temporal-key-1"
    assert (settings.vtex_app_key, settings.database_url) == (
        "vtexappkey-store-1",
        "postgresql://hub:pw@db/hub",
    )


def test_temporals_own_api_key_with_a_control_character_inside_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_TEMPORAL_CLIENT_CONFIG", "true")
    monkeypatch.setenv("TEMPORAL_API_KEY", "tk-41d9\nnot-for-logs")
    with pytest.raises(ValidationError) as refused:
        Settings(environment="test")
    assert "TEMPORAL_API_KEY" in str(refused.value) and "not-for-logs" not in str(refused.value)


def test_a_secret_with_a_control_character_inside_is_refused_without_showing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="test", zoho_client_secret="zc-41d9\nnot-for-logs")
    assert "zoho_client_secret" in str(refused.value) and "not-for-logs" not in str(refused.value)
