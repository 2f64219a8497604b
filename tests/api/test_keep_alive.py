"""``python -m api`` keeps an idle connection open for ``HUB_API_KEEP_ALIVE_SECONDS``.

A load balancer in front reuses its connections to the API; were the API to close one sooner than the
balancer drops it, a webhook sent on it at that moment would get 502. The setting is what lets operators
keep the API's side the longer one, so these tests check that the server really honours it: closed after
1 s when set to 1, still open after 6 s (past uvicorn's own 5 s) when set to 30.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api.test_tls import ROOT, api_environment
from tests.support import free_port


@contextmanager
def api_process(tmp_path: Path, keep_alive_seconds: int) -> Iterator[int]:
    port = free_port()
    environment = api_environment(tmp_path, api_keep_alive_seconds=str(keep_alive_seconds))
    process = subprocess.Popen(
        [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def answered_health(port: int) -> http.client.HTTPConnection:
    """A connection that has had one whole answer (headers and body) to ``GET /healthz``."""
    deadline = time.monotonic() + 30
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            return connection
        except OSError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def open_after_idle(port: int, idle_seconds: float) -> bool:
    """Whether a connection that answered one request is still open after ``idle_seconds`` of silence."""
    connection = answered_health(port)
    try:
        time.sleep(idle_seconds)
        assert connection.sock is not None
        connection.sock.settimeout(0.5)
        try:
            return connection.sock.recv(1) != b""  # b"": the server closed it
        except TimeoutError:
            return True  # nothing to read, and still open
    finally:
        connection.close()


@pytest.mark.parametrize(("keep_alive_seconds", "idle_seconds", "still_open"), [(1, 3, False), (30, 6, True)])
def test_an_idle_connection_stays_open_as_long_as_configured(
    tmp_path: Path, keep_alive_seconds: int, idle_seconds: float, still_open: bool
) -> None:
    with api_process(tmp_path, keep_alive_seconds) as port:
        assert open_after_idle(port, idle_seconds) is still_open
