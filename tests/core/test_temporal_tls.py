"""TLS to Temporal from the settings: self-hosted with a private CA and mTLS, or Temporal Cloud's API key."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from pydantic import SecretStr
from temporalio.service import TLSConfig

from core.settings import Settings
from core.temporal import tls_config


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
