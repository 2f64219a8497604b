"""TLS to Temporal from the settings: self-hosted with a private CA and mTLS, or Temporal Cloud's API key."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from pydantic import SecretStr, ValidationError
from temporalio.service import TLSConfig

from core.settings import Settings
from core.temporal import connect, tls_config
from tests.support import PRODUCTION_SETTINGS


def test_plain_unless_asked(tmp_path: Path) -> None:
    assert tls_config(Settings()) is False
    assert tls_config(Settings(temporal_tls=True)) is True  # public CA, system trust store
    assert tls_config(Settings(temporal_api_key=SecretStr("cloud-key"))) is True  # API keys need TLS


def test_private_ca_and_client_certificate_are_read_from_files(tmp_path: Path) -> None:
    authority = trustme.CA()
    client = authority.issue_cert("hub-worker.carmaker.example")
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    authority.cert_pem.write_to_path(str(ca))
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    settings = Settings(
        temporal_tls_ca_file=str(ca),
        temporal_tls_cert_file=str(cert),
        temporal_tls_key_file=str(key),
        temporal_tls_server_name="temporal.carmaker.internal",
    )
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == ca.read_bytes()
    assert (config.client_cert, config.client_private_key) == (cert.read_bytes(), key.read_bytes())
    assert config.domain == "temporal.carmaker.internal"
    with pytest.raises(FileNotFoundError, match=r"missing\.pem"):  # at start, naming the file
        tls_config(Settings(temporal_tls_ca_file=str(tmp_path / "missing.pem")))


# Temporal's own client configuration (temporalio.envconfig), as the temporal CLI and Temporal Cloud's
# documentation set it up: a temporal.toml profile and TEMPORAL_* variables.
CLOUD_PROFILE = """\
[profile.default]
address = "127.0.0.1:7233"

[profile.cloud]
address = "carmaker-prod.a1b2c.tmprl.cloud:7233"
namespace = "carmaker-prod.a1b2c"
api_key = "profile-key"

[profile.cloud.tls]
server_name = "carmaker-prod.a1b2c.tmprl.cloud"

[profile.cloud.grpc_meta]
x-team = "integrations"
"""


@pytest.fixture
def cloud_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "temporal.toml"
    config.write_text(CLOUD_PROFILE, encoding="utf-8")
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    return config


async def test_a_temporal_toml_profile_and_temporal_variables_reach_the_client(
    cloud_profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "carmaker-staging.a1b2c")  # a variable overrides the file
    client = await connect(Settings(temporal_client_config=True), lazy=True)
    service = client.service_client.config
    assert service.target_host == "carmaker-prod.a1b2c.tmprl.cloud:7233"
    assert client.namespace == "carmaker-staging.a1b2c"
    assert service.api_key == "profile-key"
    assert isinstance(service.tls, TLSConfig) and service.tls.domain == "carmaker-prod.a1b2c.tmprl.cloud"
    assert service.rpc_metadata == {"x-team": "integrations"}


def test_hub_settings_override_temporal_client_configuration(cloud_profile: Path) -> None:
    settings = Settings(
        temporal_client_config=True,
        temporal_address="temporal.carmaker.internal:7233",
        temporal_namespace="leads",
        temporal_api_key=SecretStr("hub-key"),
        temporal_tls=True,
    )
    assert settings.temporal_address == "temporal.carmaker.internal:7233"
    assert settings.temporal_namespace == "leads"
    assert settings.temporal_api_key.get_secret_value() == "hub-key"
    assert tls_config(settings) is True  # the HUB_ TLS setting, not the profile's server name


def test_without_any_configuration_the_local_dev_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(temporal_client_config=True)
    assert (settings.temporal_address, settings.temporal_namespace) == ("127.0.0.1:7233", "default")
    assert tls_config(settings) is False
    # Turned off (the local stack, the tests): TEMPORAL_* variables are not read.
    monkeypatch.setenv("TEMPORAL_ADDRESS", "elsewhere:7233")
    assert Settings(temporal_client_config=False).temporal_address == "127.0.0.1:7233"
    assert Settings(temporal_client_config=True).temporal_address == "elsewhere:7233"


def test_production_refuses_an_api_key_with_tls_turned_off(
    cloud_profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_TLS", "false")
    with pytest.raises(ValidationError, match="temporal_api_key is set but TLS to Temporal is disabled"):
        Settings(**PRODUCTION_SETTINGS, temporal_client_config=True)
    # Locally it is the developer's choice (a dev server behind an API-key proxy, say).
    assert tls_config(Settings(temporal_client_config=True)) is False
    # A HUB_ TLS setting turns it back on, and production accepts that.
    assert Settings(**PRODUCTION_SETTINGS, temporal_client_config=True, temporal_tls=True).temporal_api_key
