"""Connecting to Temporal: every client, worker and replayer the project creates uses ``data_converter``."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import Runtime
from temporalio.service import RetryConfig, RPCError, RPCStatusCode, TLSConfig

from core.codec import EncryptionCodec, KeyRing
from core.settings import Settings
from core.tracing import temporal_interceptors


def payload_codec(settings: Settings) -> EncryptionCodec:
    """The payload codec of the configured key ring (the codec server uses it alone)."""
    keys = {key_id: key.get_secret_value() for key_id, key in settings.payload_keys.items()}
    ring = KeyRing.from_text(keys, settings.payload_active_key)
    return EncryptionCodec(ring, encrypt=settings.payload_encryption)


# The marker the SDK core records in a workflow's history for each local activity's result.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


@functools.lru_cache(maxsize=1024)
def type_adapter(type_hint: Any) -> TypeAdapter[Any]:
    """The process's one pydantic adapter (its validation schema, built once) of a payload's type."""
    return TypeAdapter(type_hint)


class SharedAdaptersJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON payloads, read through the process's shared type adapters.

    The worker builds a payload converter for every workflow run it loads, and the SDK's converter keeps
    its adapters per instance: each run built the schema of every type it read again (a signal's report,
    each activity result), a few milliseconds of CPU per run that only waits for one signal.
    """

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint = Any if type_hint is None else type_hint
        try:
            adapter = type_adapter(hint)
        except TypeError:
            try:
                hash(hint)
            except TypeError:  # an unhashable hint cannot be cached: the SDK's own way
                return super().from_payload(payload, type_hint)
            raise  # the adapter itself failed
        return adapter.validate_json(payload.data)


class HubPayloadConverter(CompositePayloadConverter):
    """The SDK's pydantic payload converter, with its JSON converter reading through shared adapters."""

    def __init__(self) -> None:
        json_converter = SharedAdaptersJSONConverter(max_cached_type_adapters=0)
        super().__init__(
            *(
                json_converter if isinstance(converter, JSONPlainPayloadConverter) else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


def data_converter(settings: Settings) -> DataConverter:
    """The one data converter: JSON through pydantic, then compressed and encrypted with the key ring.

    JSON through pydantic: workflow and activity types may carry Decimal and aware datetime values, and
    plain dataclasses keep working (their JSON is the same as with the SDK's default converter).
    Failure messages and stack traces move into the failure's encoded attributes, so they are encrypted
    too: errors quote field values and partners' answers.
    """
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=HubPayloadConverter,
        payload_codec=payload_codec(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    retry_config: RetryConfig | None = None,
) -> Client:
    """A client of the configured Temporal namespace (HUB_TEMPORAL_* over Temporal's client configuration)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=settings.temporal_api_key.get_secret_value() or None,
        rpc_metadata=settings.temporal_rpc_metadata,
        interceptors=temporal_interceptors(),
        lazy=lazy,
        runtime=runtime,
        retry_config=retry_config,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to Temporal: the HUB_TEMPORAL_TLS* settings when any is given, else the TLS section of
    Temporal's client configuration, else on exactly when there is an API key (Temporal Cloud: the
    system's CAs). Files are read here, so a missing one fails at start, by name."""
    if not settings.temporal_tls_given:
        if settings.temporal_profile_tls is not None:
            return settings.temporal_profile_tls.to_connect_tls_config()
        return bool(settings.temporal_api_key.get_secret_value())
    files = {
        "server_root_ca_cert": settings.temporal_tls_ca_file,
        "client_cert": settings.temporal_tls_cert_file,
        "client_private_key": settings.temporal_tls_key_file,
    }
    if not any(files.values()) and not settings.temporal_tls_server_name:
        return True
    contents = {name: Path(path).read_bytes() if path else None for name, path in files.items()}
    return TLSConfig(
        server_root_ca_cert=contents["server_root_ca_cert"],
        client_cert=contents["client_cert"],
        client_private_key=contents["client_private_key"],
        domain=settings.temporal_tls_server_name or None,
    )


# What Temporal answers when it is away, overloaded or too slow: the sender should retry later. Any
# other gRPC status (INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND ...) means the hub asked wrongly.
UNAVAILABLE_STATUSES = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.ABORTED,
    }
)


def temporal_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says Temporal could not be reached in time (retry later), not a hub bug."""
    if isinstance(error, TimeoutError):
        return True
    if isinstance(error, RPCError):
        return error.status in UNAVAILABLE_STATUSES
    # The lazy client's connection attempt fails with a plain RuntimeError (temporalio's bridge).
    return isinstance(error, RuntimeError) and str(error).startswith("Failed client connect")
