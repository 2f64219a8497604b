"""What production refuses: local secrets and keys, empty secrets, local and internal endpoints."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from core.outbound import RefusedUrl, check_url
from core.production import api_tls_problem
from core.settings import Settings
from tests.support import PRODUCTION_SETTINGS as REAL


def refused(**changes: Any) -> str:
    with pytest.raises(ValidationError) as error:
        Settings(**{**REAL, **changes})
    return str(error.value)


def test_a_real_production_configuration_loads() -> None:
    assert Settings(**REAL).environment == "production"
    # No rotation under way: a dealer's previous secret may be empty.
    assert Settings(**REAL, dealer_webhook_previous_secrets={"dealer-mg-bh": ""}).environment == "production"


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
