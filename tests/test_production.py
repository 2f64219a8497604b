"""What production refuses: local secrets and keys, empty secrets, local and internal endpoints."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest
from pydantic import ValidationError

import core.settings
from core.outbound import RefusedUrl, check_url
from core.production import api_tls_problem
from core.settings import ApiSettings, Settings, WorkerSettings
from tests.support import PRODUCTION_SETTINGS as REAL


@pytest.fixture(autouse=True)
def public_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partner hosts resolve to a public address at once: this machine's resolver, which has no way out,
    answers each name only after its time-out (the checks of resolved addresses have their own test)."""
    monkeypatch.setattr(
        core.settings, "check_url", partial(check_url, resolver=lambda host: ["93.184.215.14"])
    )


def refused(**changes: Any) -> str:
    """What the API or a worker of both roles refuses in these settings."""
    messages = []
    for kind, role in ((ApiSettings, {}), (WorkerSettings, {"worker_role": "all"})):
        try:
            kind(**{**REAL, **changes, **role})
        except ValidationError as error:
            messages.append(str(error))
    assert messages, "both processes loaded"
    return "\n".join(messages)


def test_a_real_production_configuration_loads() -> None:
    for kind in (Settings, ApiSettings, WorkerSettings):
        assert kind(**REAL).environment == "production"
    # No rotation under way: a dealer's previous secret may be empty.
    assert (
        ApiSettings(**REAL, dealer_webhook_previous_secrets={"dealer-mg-bh": ""}).environment == "production"
    )


def test_each_process_needs_only_the_secrets_it_uses() -> None:
    """The API calls no partner: it starts without their credentials. A worker checks no webhook: it
    starts without their secrets. Each refuses to start without one of its own."""
    partners = {
        "zoho_client_secret": "", "zoho_refresh_token": "", "event_signing_secret": "", "smtp_password": "",
        "vtex_app_token": "", "dealer_api_keys": {}, "zoho_client_id": "local-client",
        "vtex_app_key": "vtexappkey-localstore-LOCAL",
    }  # fmt: skip
    webhooks = {
        "zoho_webhook_secret": "", "read_api_token": "", "metrics_token": "", "dealer_webhook_secrets": {},
    }  # fmt: skip
    assert ApiSettings(**{**REAL, **partners}).environment == "production"
    flows = WorkerSettings(
        **{**REAL, **webhooks, "vtex_app_token": "", "vtex_hook_secret": ""}, worker_role="flows"
    )
    assert flows.environment == "production"
    warehouse = {**REAL, **webhooks, "zoho_client_secret": "", "dealer_api_keys": {}}
    assert WorkerSettings(**warehouse, worker_role="warehouse").environment == "production"
    assert Settings(**{**REAL, **partners, **webhooks}).environment == "production"  # the hub command
    with pytest.raises(ValidationError, match="vtex_app_token is empty"):
        WorkerSettings(**{**warehouse, "vtex_app_token": ""}, worker_role="warehouse")
    with pytest.raises(ValidationError, match="zoho_client_secret is empty"):
        WorkerSettings(**warehouse, worker_role="all")
    with pytest.raises(ValidationError, match="zoho_client_id is the local stack's"):
        WorkerSettings(**{**REAL, "zoho_client_id": "local-client"}, worker_role="flows")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"read_api_token": "local-dev-only-change-me"}, "read_api_token is a local placeholder"),
        ({"vtex_hook_secret": ""}, "vtex_hook_secret is empty"),
        ({"dealer_api_keys": {"dealer-sp-centro": "local-key-dealer-sp-centro"}},
         "dealer_api_keys[dealer-sp-centro] is a local placeholder"),
        ({"dealer_api_keys": {"dealer-mg-bh": ""}}, "dealer_api_keys[dealer-mg-bh] is empty"),
        ({"dealer_webhook_previous_secrets": {"dealer-mg-bh": "change-me"}},
         "dealer_webhook_previous_secrets[dealer-mg-bh] is a local placeholder"),
        ({"zoho_client_id": "local-client"}, "zoho_client_id is the local stack's"),
        ({"vtex_hook_previous_secret": "local-dev-only-change-me"}, "vtex_hook_previous_secret is a local"),
        ({"zoho_api_base_url": "http://127.0.0.1:8100/zoho"}, "zoho_api_base_url: http://127.0.0.1:8100"),
        ({"bigquery_endpoint": "http://127.0.0.1:9050"}, "bigquery_endpoint: http://127.0.0.1:9050: plain"),
        ({"vtex_api_base_url": "https://127.0.0.1:8443/vtex"}, "127.0.0.1 is an internal address"),
        ({"event_subscribers": ["https://10.0.4.2/hook"]}, "event_subscribers[0]: https://10.0.4.2"),
        ({"event_subscribers": ["https://169.254.169.254/latest"]}, "169.254.169.254 is an internal"),
        ({"zoho_accounts_url": "https://localhost/oauth"}, "localhost is an internal address"),
        ({"payload_encryption": False}, "payload_encryption is off"),
        ({"metrics_token": ""}, "metrics_token is empty"),
        ({"metrics_token": "local-dev-only-change-me"}, "metrics_token is a local placeholder"),
        ({"codec_server_token": "change-me"}, "codec_server_token is a local placeholder"),
        ({"smtp_password": "change-me-smtp"}, "smtp_password is a local placeholder"),
        ({"database_url": ""}, "database_url is the local SQLite file"),
        ({"database_url": "sqlite:///var/portal.db"}, "database_url is the local SQLite file"),
        ({"database_url": "postgresql+psycopg://hub:change-me@db.example/hub"},
         "database_url's password is a local placeholder"),
    ],
)  # fmt: skip
def test_production_refuses(changes: dict[str, Any], reason: str) -> None:
    message = refused(**changes)
    assert reason in message
    assert "dk-123" not in message and "rt-77c1" not in message  # secrets are named, never shown


def test_hosts_can_be_allowed_explicitly() -> None:
    settings = Settings(
        **{**REAL, "event_subscribers": ["http://portal.internal:8080/hooks", "https://10.0.4.2/hook"]},
        outbound_plain_http_hosts=["portal.internal"],
        outbound_private_hosts=["10.0.4.2", "portal.internal"],
    )
    settings.check_outbound_url("https://10.0.4.2/other")
    with pytest.raises(RefusedUrl, match=r"10\.0\.4\.3 is an internal address"):
        settings.check_outbound_url("https://10.0.4.3/other")


def test_names_are_refused_by_what_they_resolve_to() -> None:
    def resolver(host: str) -> list[str]:
        return {"crm.dealer.example": ["10.20.0.7"], "api.dealer.example": ["203.0.113.9", "fd00::1"]}.get(
            host, ["93.184.215.14"]
        )

    check_url("https://www.dealer.example/api", production=True, resolver=resolver)
    for host, internal in (("crm.dealer.example", "10.20.0.7"), ("api.dealer.example", "203.0.113.9")):
        with pytest.raises(RefusedUrl, match=re.escape(f"{internal} is an internal address")):
            check_url(f"https://{host}/wsdl", production=True, resolver=resolver)
    check_url("http://127.0.0.1:8100/dealers/x", production=False, resolver=resolver)  # local stack
    with pytest.raises(RefusedUrl, match="not an http"):
        check_url("file:///etc/passwd", production=False)


def test_certificate_and_key_go_together() -> None:
    with pytest.raises(ValidationError, match="temporal_tls_cert_file and temporal_tls_key_file go together"):
        Settings(temporal_tls_cert_file="client.pem")
    with pytest.raises(ValidationError, match="api_tls_cert_file and api_tls_key_file go together"):
        Settings(api_tls_key_file="key.pem")


def test_the_api_needs_tls_or_a_proxy_in_production() -> None:
    assert "refuses to serve without TLS" in api_tls_problem(Settings(**REAL))
    assert api_tls_problem(Settings(**REAL, api_behind_tls_proxy=True)) == ""
    assert api_tls_problem(Settings(**REAL, api_tls_cert_file="c.pem", api_tls_key_file="k.pem")) == ""
    assert api_tls_problem(Settings()) == ""  # local
