"""Load temporalio and httpx without the parts a hub process never uses.

- temporalio reaches the Temporal server through its Rust core. Its generated gRPC stubs are an optional
  extra (``temporalio[grpc]``) that it imports only when ``grpcio`` is installed, and the hub's image has
  ``grpcio`` for BigQuery's libraries. Loaded by temporalio, it costs an API or ``flows`` worker process
  about 15 MiB resident (its C core and modules) for stubs nothing calls.
- httpx imports its command-line client (click, pygments, rich) whenever those are installed: about
  5 MiB in each worker process where a development install has them (rich comes with the test tools).
"""

from __future__ import annotations

import sys


def import_temporalio_without_grpc() -> None:
    """Import temporalio's client as an install without ``grpcio`` would. Call it before anything
    imports temporalio; later imports of ``grpc`` (BigQuery Storage, an OTLP exporter over gRPC) work
    as always."""
    if "grpc" in sys.modules or "temporalio.service" in sys.modules:
        return  # too late to matter, or already done
    sys.modules["grpc"] = None  # type: ignore[assignment]  # `import grpc` raises ImportError
    try:
        import temporalio.client  # noqa: F401  # its service modules skip their gRPC stubs
    finally:
        del sys.modules["grpc"]


def import_httpx_without_cli() -> None:
    """Import httpx as an install without its ``cli`` extra would: ``httpx.main`` then only says the
    extra is missing. Call it before anything imports httpx."""
    if "httpx" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # httpx falls back on ImportError
    try:
        import httpx  # noqa: F401
    finally:
        del sys.modules["httpx._main"]
