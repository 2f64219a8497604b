"""Connecting to Temporal: every client and worker the project creates uses the data converter here."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig, TLSConfig

from core.settings import Settings

# JSON through pydantic: workflow and activity types may carry Decimal and aware datetime values, and
# plain dataclasses keep working (their JSON is the same as with the SDK's default converter).
DATA_CONVERTER: DataConverter = pydantic_data_converter


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    retry_config: RetryConfig | None = None,
) -> Client:
    """A client of the configured Temporal namespace."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key.get_secret_value() or None,
        lazy=lazy,
        runtime=runtime,
        retry_config=retry_config,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to Temporal from the settings: files read here, so a missing one fails at start, by name.

    An API key (Temporal Cloud) needs TLS, with the system's CAs unless a CA file is given.
    """
    files = {
        "server_root_ca_cert": settings.temporal_tls_ca_file,
        "client_cert": settings.temporal_tls_cert_file,
        "client_private_key": settings.temporal_tls_key_file,
    }
    if not any(files.values()) and not settings.temporal_tls_server_name:
        return settings.temporal_tls or bool(settings.temporal_api_key.get_secret_value())
    contents = {name: Path(path).read_bytes() for name, path in files.items() if path}
    return TLSConfig(domain=settings.temporal_tls_server_name or None, **contents)
