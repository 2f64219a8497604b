"""Load temporalio without gRPC's Python runtime in processes that never speak gRPC themselves.

temporalio reaches the Temporal server through its Rust core. Its generated gRPC stubs are an optional
extra (``temporalio[grpc]``) that it imports only when ``grpcio`` is installed, and the hub's image has
``grpcio`` for BigQuery's libraries. Loaded by temporalio, it costs an API or ``flows`` worker process
about 15 MiB resident (its C core and modules) for stubs nothing calls.
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
