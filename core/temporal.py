"""Connecting to Temporal: every client and worker the project creates uses the data converter here."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig

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
        lazy=lazy,
        runtime=runtime,
        retry_config=retry_config,
    )
