"""Payload encryption: sealed payloads, the key ring's rotation, and its clear refusals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from core.codec import ENCODING, KEY_ID, EncryptionCodec, KeyRing, PayloadKeyError
from core.settings import Settings
from core.temporal import data_converter, payload_codec
from tests.stored import stored
from tests.support import new_key

KEY_A, KEY_B = new_key(), new_key()
CONTACT = {
    "name": "Marina Albuquerque",
    "email": "marina.albuquerque@example.com.br",
    "cpf": "390.533.447-05",
}


def settings(active: str, **keys: str) -> Settings:
    return Settings(environment="test", payload_keys=keys, payload_active_key=active)


def json_payload(value: object) -> Payload:
    return data_converter(Settings(environment="test")).payload_converter.to_payloads([value])[0]


async def test_sealed_payload_hides_the_value_names_its_key_and_opens_again() -> None:
    codec = payload_codec(settings("a", a=KEY_A))
    plain = json_payload(CONTACT)
    (sealed,) = await codec.encode([plain])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"a"
    assert set(sealed.metadata) == {"encoding", KEY_ID}  # not even the JSON encoding shows
    assert b"marina" not in sealed.data.lower()
    assert await codec.decode([sealed]) == [plain]
    (again,) = await codec.encode([plain])
    assert again.data != sealed.data  # a fresh nonce for every payload


async def test_payloads_are_compressed_before_encryption() -> None:
    codec = payload_codec(settings("a", a=KEY_A))
    plain = json_payload({"items": [CONTACT] * 200})
    (sealed,) = await codec.encode([plain])
    assert len(sealed.data) < len(plain.data) / 10


async def test_key_ring_rotation_reads_old_payloads_and_writes_with_the_new_key() -> None:
    (old,) = await payload_codec(settings("a", a=KEY_A)).encode([json_payload(CONTACT)])
    rotated = payload_codec(settings("b", a=KEY_A, b=KEY_B))
    assert await rotated.decode([old]) == [json_payload(CONTACT)]
    (new,) = await rotated.encode([json_payload(CONTACT)])
    assert new.metadata[KEY_ID] == b"b"

    without_a = payload_codec(settings("b", b=KEY_B))
    with pytest.raises(PayloadKeyError, match=r"key id 'a', which is not in the key ring \(b\)"):
        await without_a.decode([old])


async def test_altered_or_relabelled_payloads_are_refused() -> None:
    codec = payload_codec(settings("a", a=KEY_A, b=KEY_B))
    (sealed,) = await codec.encode([json_payload(CONTACT)])
    altered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadKeyError, match="does not decrypt"):
        await codec.decode([altered])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"b"}, data=sealed.data)
    with pytest.raises(PayloadKeyError, match="key id 'b' does not decrypt"):
        await codec.decode([relabelled])


async def test_payloads_written_before_encryption_pass_through() -> None:
    plain = json_payload(CONTACT)
    assert await payload_codec(settings("a", a=KEY_A)).decode([plain]) == [plain]


async def test_with_encryption_off_new_payloads_are_plain_and_old_ones_still_open() -> None:
    (sealed,) = await payload_codec(settings("a", a=KEY_A)).encode([json_payload(CONTACT)])
    off = payload_codec(Settings(environment="test", payload_keys={"a": KEY_A}, payload_encryption=False))
    plain = json_payload(CONTACT)
    assert await off.encode([plain]) == [plain]
    assert await off.decode([sealed]) == [plain]


def test_a_ring_needs_its_active_key() -> None:
    with pytest.raises(ValueError, match="not in the key ring"):
        EncryptionCodec(KeyRing({"a": b"k" * 32}, active="b"))


# --- on the dev server: a history outlives a key rotation ------------------------------------------------


@dataclass
class Contact:
    name: str
    email: str
    cpf: str


@workflow.defn(sandboxed=False)
class EchoWorkflow:
    @workflow.run
    async def run(self, contact: Contact) -> Contact:
        return contact


def client_with(env: WorkflowEnvironment, converter: DataConverter) -> Client:
    return Client(env.client.service_client, namespace=env.client.namespace, data_converter=converter)


async def echo(client: Client, task_queue: str) -> str:
    workflow_id = f"echo-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[EchoWorkflow]):
        await client.execute_workflow(
            EchoWorkflow.run, Contact(**CONTACT), id=workflow_id, task_queue=task_queue
        )
    return workflow_id


async def test_history_written_with_key_a_reads_and_replays_after_b_becomes_active(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    only_a = data_converter(settings("a", a=KEY_A))
    rotated = data_converter(settings("b", a=KEY_A, b=KEY_B))
    written_with_a = await echo(client_with(temporal_env, only_a), task_queue)

    handle = client_with(temporal_env, rotated).get_workflow_handle_for(EchoWorkflow.run, written_with_a)
    assert await handle.result() == Contact(**CONTACT)
    await Replayer(workflows=[EchoWorkflow], data_converter=rotated).replay_workflow(
        await handle.fetch_history()
    )

    written_after = await echo(client_with(temporal_env, rotated), task_queue)
    key_ids = {p.metadata[KEY_ID] for p in (await stored(temporal_env.client, written_after)).payloads()}
    assert key_ids == {b"b"}

    without_a = client_with(temporal_env, data_converter(settings("b", b=KEY_B)))
    with pytest.raises(PayloadKeyError, match="key id 'a', which is not in the key ring"):
        await without_a.get_workflow_handle(written_with_a).result()
