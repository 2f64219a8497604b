"""``python -m api`` keeps an idle connection open for ``HUB_API_KEEP_ALIVE_SECONDS``.

A load balancer in front reuses its connections to the API; were the API to close one sooner than the
balancer drops it, a webhook sent on it at that moment would get 502. The setting is what lets operators
keep the API's side the longer one, so these tests check that the server really honours it: closed after
1 s when set to 1, still open past uvicorn's own default when set to 30.
"""

from __future__ import annotations

import http.client
import inspect
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from tests.api.test_tls import ROOT, api_environment
from tests.support import free_port, until_ready

UVICORN_KEEP_ALIVE = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default


@contextmanager
def api_connection(tmp_path: Path, keep_alive_seconds: int) -> Iterator[http.client.HTTPConnection]:
    """A connection to a new ``python -m api`` that has had one whole answer to ``GET /healthz``."""
    port = free_port()
    environment = api_environment(tmp_path, api_keep_alive_seconds=str(keep_alive_seconds))
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        connection = until_ready(lambda: answered_health(port), process, log, timeout=30)
        try:
            yield connection
        finally:
            connection.close()
    finally:
        process.terminate()
        process.wait(timeout=15)


def answered_health(port: int) -> http.client.HTTPConnection | None:
    """A connection that has had one whole answer to ``GET /healthz``; None while nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()  # headers and body: nothing of the answer is left to read
    except OSError:
        connection.close()
        return None
    assert response.status == 200
    return connection


def still_open(connection: http.client.HTTPConnection) -> bool:
    assert connection.sock is not None
    connection.sock.settimeout(0.5)
    try:
        return connection.sock.recv(1) != b""  # b"": the server closed it
    except TimeoutError:
        return True  # nothing to read, and still open


@pytest.mark.parametrize(
    ("keep_alive_seconds", "idle_seconds", "kept"), [(1, 3, False), (30, UVICORN_KEEP_ALIVE + 1, True)]
)
def test_an_idle_connection_stays_open_as_long_as_configured(
    tmp_path: Path, keep_alive_seconds: int, idle_seconds: float, kept: bool
) -> None:
    with api_connection(tmp_path, keep_alive_seconds) as connection:
        time.sleep(idle_seconds)
        assert still_open(connection) is kept
