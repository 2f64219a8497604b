"""``python -m api`` keeps an idle connection open for ``HUB_API_KEEP_ALIVE_SECONDS``.

A load balancer in front reuses its connections to the API; were the API to close one sooner than the
balancer drops it, a webhook sent on it at that moment would get 502. The setting is what lets operators
keep the API's side the longer one, so these tests check that the server really honours it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api.test_tls import ROOT, api_environment
from tests.support import free_port

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


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


def connect_when_serving(port: int) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def open_after_idle(port: int, idle_seconds: float) -> bool:
    """Whether a connection that answered one request is still open after ``idle_seconds`` of silence."""
    with connect_when_serving(port) as connection:
        connection.sendall(REQUEST)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(idle_seconds)
        connection.settimeout(0.5)
        try:
            return connection.recv(1) != b""  # b"": the server closed it
        except TimeoutError:
            return True  # nothing to read, and still open


@pytest.mark.parametrize(("keep_alive_seconds", "still_open"), [(1, False), (30, True)])
def test_an_idle_connection_stays_open_as_long_as_configured(
    tmp_path: Path, keep_alive_seconds: int, still_open: bool
) -> None:
    with api_process(tmp_path, keep_alive_seconds) as port:
        assert open_after_idle(port, idle_seconds=3) is still_open
