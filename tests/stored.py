"""What Temporal stores of a workflow, read as anyone with access to Temporal would: no codec, no key."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import History, HistoryEvent, MarkerRecordedEventAttributes
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
    GetWorkflowExecutionHistoryRequest,
)
from temporalio.client import Client

from core.codec import ENCODING
from core.temporal import LOCAL_ACTIVITY_MARKER

PATCH_MARKER = "core_patch"


@dataclass
class Stored:
    """A workflow's history (every run) and its description (memo, search attributes), as stored."""

    workflow_id: str
    history: History
    description: DescribeWorkflowExecutionResponse

    def payloads(self) -> list[Payload]:
        """Every payload of the history and description, except search attributes (plain by design)."""
        return payloads_in(self.history, self.description)

    def plaintext(self) -> bytes:
        """Everything stored except the ciphertext of encrypted payloads: what anyone can read."""
        history, description = History(), DescribeWorkflowExecutionResponse()
        history.CopyFrom(self.history)
        description.CopyFrom(self.description)
        for payload in payloads_in(history, description):
            if payload.metadata.get("encoding") == ENCODING:
                payload.data = b""
        return history.SerializeToString() + description.SerializeToString()

    def failures(self) -> list[Failure]:
        return [m for m in messages_in(self.history) if isinstance(m, Failure)]

    def search_attribute_values(self) -> list[bytes]:
        found = []
        for message in messages_in(self.history, self.description):
            if isinstance(message, SearchAttributes):
                found += [payload.data for payload in message.indexed_fields.values()]
        return found


async def stored(client: Client, workflow_id: str) -> Stored:
    """The workflow's stored history across its runs (continue-as-new included) and its description.

    Straight from the service's API: nothing goes through a data converter on the way.
    """
    history = History()
    run_id = ""
    for _ in range(100):  # runs chained by continue-as-new
        run = await _history_of(client, workflow_id, run_id)
        history.events.extend(run.events)
        last = run.events[-1] if run.events else None
        if last is None or not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            break
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    description = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace=client.namespace, execution={"workflow_id": workflow_id})
    )
    return Stored(workflow_id, history, description)


async def _history_of(client: Client, workflow_id: str, run_id: str) -> History:
    history = History()
    page_token = b""
    while True:
        response = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution={"workflow_id": workflow_id, "run_id": run_id},
                next_page_token=page_token,
            )
        )
        history.events.extend(response.history.events)
        page_token = response.next_page_token
        if not page_token:
            return history


def payloads_in(*roots: Message) -> list[Payload]:
    """Every payload nested in ``roots``, except those plain by design (see ``plain_by_design``)."""
    found = []
    for message in messages_in(*roots, skip=plain_by_design):
        if isinstance(message, Payload):
            found.append(message)
        elif local_activity_marker(message):
            # Only the SDK core's own "data" (ids, attempt, times) is plain: the result and failure are not.
            assert isinstance(message, MarkerRecordedEventAttributes)
            for key, payloads in message.details.items():
                found += payloads.payloads if key != "data" else []
            found += [m for m in messages_in(message.failure) if isinstance(m, Payload)]
    return found


def plain_by_design(message: Message) -> bool:
    """Search attributes (Temporal indexes them), the SDK's patch markers (a patch id the SDK core
    records beneath the codec) and the core's record of a local activity's attempt (its id, type,
    attempt and times) are stored in plain text; none holds personal data."""
    if isinstance(message, SearchAttributes):
        return True
    if local_activity_marker(message):
        return True
    return isinstance(message, MarkerRecordedEventAttributes) and message.marker_name == PATCH_MARKER


def activity_types(events: Iterable[HistoryEvent]) -> list[str]:
    """The activity type of each activity task the history scheduled, in order."""
    scheduled = [e.activity_task_scheduled_event_attributes for e in events]
    return [e.activity_type.name for e in scheduled if e.activity_type.name]


def local_activity_types(events: Iterable[HistoryEvent]) -> list[str]:
    """The activity type of each local activity the history recorded, in order (from the SDK core's
    plain record of it)."""
    return [
        json.loads(event.marker_recorded_event_attributes.details["data"].payloads[0].data)["activity_type"]
        for event in events
        if local_activity_marker(event.marker_recorded_event_attributes)
    ]


def local_activity_marker(message: Message) -> bool:
    return isinstance(message, MarkerRecordedEventAttributes) and message.marker_name == LOCAL_ACTIVITY_MARKER


def messages_in(*roots: Message, skip: Callable[[Message], bool] | None = None) -> Iterator[Message]:
    """Every message nested in ``roots`` (themselves included), maps and lists too; not inside ``skip``."""
    for root in roots:
        yield root
        if skip is not None and skip(root):
            continue
        for field, value in root.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                if field.message_type.fields_by_name["value"].message_type is not None:
                    yield from messages_in(*value.values(), skip=skip)
            elif field.is_repeated:
                yield from messages_in(*value, skip=skip)
            else:
                yield from messages_in(value, skip=skip)
