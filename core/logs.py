"""Structured logs: one JSON object per line from the API and the worker, configured in one call.

Each line says when, how bad, which logger and what happened, and, where there is one, the workflow and
activity it belongs to (``workflow_id``, ``run_id``, ``workflow_type``, ``activity_type``, ...): with them
support staff open the run's history in the Temporal UI. The SDK's ``workflow.logger`` and
``activity.logger`` hand that context over in the record's ``extra``; lines from plain loggers inside an
activity get it from the running activity.

No personal data: the messages name ids, statuses and error types, never a lead's or a customer's
fields. An exception raised inside a workflow or an activity is logged by its type and stack only: its
message may quote a partner's answer (and so a customer's data), and the run's history keeps it,
encrypted, one click away from the line's ``workflow_id``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from temporalio import activity, workflow

# The context the SDK puts in ``extra`` (``temporal_workflow``, ``temporal_activity``), renamed as logged.
WORKFLOW_FIELDS = {
    "workflow_id": "workflow_id",
    "run_id": "run_id",
    "workflow_type": "workflow_type",
    "task_queue": "task_queue",
    "namespace": "namespace",
    "attempt": "attempt",
    "update_id": "update_id",
    "update_name": "update_name",
}
ACTIVITY_FIELDS = {
    "workflow_id": "workflow_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_type": "activity_type",
    "activity_id": "activity_id",
    "task_queue": "task_queue",
    "namespace": "namespace",
    "attempt": "attempt",
}
# Loggers that talk too much at INFO (a line per HTTP request or per scrape), or at DEBUG write what the
# hub sends: zeep logs each SOAP request and answer whole, a lead's name, e-mail and phone included.
QUIET_LOGGERS = ("httpx", "httpcore", "google", "urllib3", "grpc", "zeep")
# uvicorn sets up its own handlers before it loads the app; they go through ours instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON, with the Temporal context of the run it belongs to."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = temporal_context(record)
        line.update(context)
        if record.exc_info and record.exc_info[1] is not None:
            line.update(exception_fields(record.exc_info, with_message=not context))
        return json.dumps(line, ensure_ascii=False, default=str)


def temporal_context(record: logging.LogRecord) -> dict[str, Any]:
    """The workflow or activity a record was logged in, from the SDK's ``extra`` or the running activity."""
    details = getattr(record, "temporal_workflow", None)
    if isinstance(details, Mapping):
        return _renamed(details, WORKFLOW_FIELDS)
    details = getattr(record, "temporal_activity", None)
    if isinstance(details, Mapping):
        return _renamed(details, ACTIVITY_FIELDS)
    if activity.in_activity():  # a plain logger, called from an activity
        info = activity.info()
        return _renamed({key: getattr(info, key) for key in ACTIVITY_FIELDS}, ACTIVITY_FIELDS)
    return {}


def _renamed(details: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names[key]: value for key, value in details.items() if key in names and value is not None}


def exception_fields(exc_info: ExcInfo, *, with_message: bool) -> dict[str, str]:
    """``error`` (the exception types, outermost first) and ``traceback``, messages only if allowed."""
    error = exc_info[1]
    chain = [type(error).__name__]
    cause = error.__cause__ or error.__context__
    while cause is not None and len(chain) < 10:
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    if with_message:
        trace = "".join(traceback.format_exception(*exc_info))
    else:
        trace = "".join(traceback.format_tb(exc_info[2]))
    return {"error": " <- ".join(chain), "traceback": trace}


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log line of this process, as JSON, to ``stream`` (standard error by default).

    Call once at start-up, in the worker and in the API process (after uvicorn set up its loggers).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The context goes into the line's fields; the SDK would also append it to every message.
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
