"""``python -m api`` serves https with the configured certificate, and refuses plain http in production."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support import PRODUCTION_SETTINGS, free_port

ROOT = Path(__file__).resolve().parents[2]


def api_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    base = {
        "HUB_ENVIRONMENT": "test",
        "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
        "HUB_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # not needed to answer /healthz
    }
    return {**os.environ, **base, **{f"HUB_{name.upper()}": value for name, value in settings.items()}}


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[trustme.CA, Path, Path]]:
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    server.private_key_pem.write_to_path(str(key))
    server.cert_chain_pems[0].write_to_path(str(cert))
    yield authority, cert, key


def test_the_api_serves_https_with_the_configured_certificate(
    tmp_path: Path, certificate: tuple[trustme.CA, Path, Path]
) -> None:
    authority, cert, key = certificate
    port = free_port()
    environment = api_environment(tmp_path, api_tls_cert_file=str(cert), api_tls_key_file=str(key))
    process = subprocess.Popen(
        [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        trusted = ssl.create_default_context()
        authority.configure_trust(trusted)
        answer = None
        deadline = time.monotonic() + 30
        while answer is None and time.monotonic() < deadline:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted, timeout=2)
            except httpx.ConnectError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, "no https answer"
        with pytest.raises(httpx.HTTPError):  # nothing answers plain http on that port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # clients verify
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_production_refuses_to_serve_without_tls(tmp_path: Path) -> None:
    settings = {
        name: json.dumps(value) if isinstance(value, dict | list) else str(value)
        for name, value in PRODUCTION_SETTINGS.items()
    }
    settings["payload_keys"] = ",".join(f"{k}:{v}" for k, v in PRODUCTION_SETTINGS["payload_keys"].items())
    environment = api_environment(tmp_path, **settings)
    done = subprocess.run(
        [sys.executable, "-m", "api", "--port", str(free_port())],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "refuses to serve without TLS in production" in done.stderr
    assert "HUB_API_BEHIND_TLS_PROXY" in done.stderr
