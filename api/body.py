"""Reading and checking webhook bodies: bounded size, form-encoded or JSON, one clear 4xx for each fault.

Also what the OpenAPI document says of them, so ``/docs`` shows a sender every field and every answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, status
from pydantic import AfterValidator, AliasChoices, AwareDatetime, BaseModel, TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from core.timeutil import within_utc_range

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ZOHO_ID_PATTERN = r"^[0-9]{1,30}$"
# A time from a sender or a caller: with its offset, and one that has a UTC time (422 otherwise).
InstantWithOffset = Annotated[AwareDatetime, AfterValidator(within_utc_range)]

M = TypeVar("M", bound=BaseModel)


class ErrorAnswer(BaseModel):
    """Every 4xx and 5xx answer: one line saying what was wrong."""

    detail: str


def errors(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error answers, e.g. ``errors(e401="missing or wrong secret")``."""
    return {
        int(code.removeprefix("e")): {"model": ErrorAnswer, "description": text}
        for code, text in descriptions.items()
    }


WEBHOOK_ERRORS = errors(
    e400="body is not valid UTF-8 or not valid JSON",
    e401="missing or wrong shared secret",
    e413="body over the size limit",
    e415="neither form-encoded nor JSON",
    e422="a field is missing or malformed (the answer names it)",
    e500="not made durable because of a bug in the hub (logged with its stack)",
    e503="not made durable (Temporal unreachable or too busy, or no secret configured): "
    "send again after the Retry-After delay",
)


def read_errors(
    record: str, unavailable: str = "no read token configured, or the portal database did not answer"
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a read API route for one ``record`` by its id."""
    return errors(
        e401="missing or wrong bearer token",
        e404=f"no such {record}",
        e422=f"malformed {record} id",
        e503=unavailable,
    )


def request_body(body_type: Any, *media_types: str) -> dict[str, Any]:
    """``openapi_extra`` declaring ``body_type`` (a model, or a union of them) as the body in each media type.

    The routes read and check bodies themselves (size limit, form or JSON, one 422 naming the field), so
    FastAPI does not know them; this tells the OpenAPI document.
    """
    schema = TypeAdapter(body_type).json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    if "title" in schema and "properties" in schema:  # a model: declared once, referred to per media type
        definitions[schema["title"]] = schema
        schema = {"$ref": f"#/components/schemas/{schema['title']}"}
    return {
        "requestBody": {
            "required": True,
            "content": {media_type: {"schema": schema} for media_type in media_types},
        },
        "x-schemas": definitions,  # moved to components.schemas by api.openapi
    }


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes with 413 before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The sender's fault, not a bug: counted as a refused request, never as an error to page on.
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "the connection closed before the whole body arrived"
        ) from None
    return b"".join(chunks)


# Objects and lists within objects and lists: partners' bodies nest a few levels; the workers' JSON
# reader (pydantic's) refuses a payload nested a few hundred levels deep.
MAX_DEPTH = 64


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400: Python reads it as infinity, which no later step can store
        raise ValueError(f"number out of range: {text}")
    return number


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")  # Python's json module reads NaN and Infinity


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: 400 when it is not standard JSON (RFC 8259), 422 when it is JSON but
    not an object.

    Python's reader takes more than the standard does: NaN, Infinity, numbers beyond a float's range,
    and escaped lone surrogates (``"\\ud800"``). None of them can be encoded again for Temporal or
    stored in a BigQuery JSON column, so an event carrying one would be acknowledged and then fail:
    they are refused here instead.
    """
    try:
        data = json.loads(body.decode("utf-8"), parse_float=_finite, parse_constant=_not_json)
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails to encode
    except UnicodeDecodeError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not valid UTF-8") from error
    except UnicodeEncodeError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body holds a lone surrogate escape") from error
    except RecursionError as error:  # [[[[... deeper than the reader goes: a sender's mistake, not a bug
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body nests too deeply") from error
    except ValueError as error:  # JSONDecodeError, and the refusals above
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "JSON body must be an object")
    _refuse_unstorable(data)
    return data


def _refuse_unstorable(data: dict[str, Any]) -> None:
    """422 for a NUL character (U+0000) in any name or text of the body: JSON and form encoding carry it,
    but PostgreSQL stores it in no text or JSON column, so the event would be acknowledged and then
    fail for good in a later step. 400 for objects and lists nested deeper than ``MAX_DEPTH``: the
    worker's reader refuses far less deep a payload than Python's does, so the event would be stuck."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:  # (no recursion: the body's depth is the sender's)
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body nests too deeply")
        if isinstance(value, dict):
            pending += [(key, depth) for key in value]
            pending += [(item, depth + 1) for item in value.values()]
        elif isinstance(value, list):
            pending += [(item, depth + 1) for item in value]
        elif isinstance(value, str) and "\x00" in value:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body holds a NUL character (U+0000)")


def _media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == JSON or media_type.endswith("+json")


def json_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """A body our own contract declares JSON: a JSON object, or 415 for another declared type (none
    declared is taken for JSON: senders that leave the header out worked before it was checked)."""
    media_type = _media_type(content_type)
    if media_type and not _is_json(media_type):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"content type must be {JSON}")
    return json_object(body)


def parse_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """Zoho webhooks send form-encoded pairs or a raw JSON object; anything else is a 4xx."""
    media_type = _media_type(content_type)
    if media_type == FORM:
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not valid UTF-8") from error
        _refuse_unstorable(fields)
        return fields
    if _is_json(media_type):
        return json_object(body)
    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"content type must be {FORM} or {JSON}")


def validation_message(errors: Sequence[Any], what: str = "webhook") -> str:
    """One line naming each offending field, e.g. ``invalid webhook: lead_id: Field required``."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors]
    return f"invalid {what}: " + "; ".join(parts)


def parse_model(model: type[M], fields: dict[str, Any]) -> M:
    """``fields`` as ``model``, or 422 naming each offending field."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, validation_message(error.errors())
        ) from error


def spellings(name: str, *others: str) -> AliasChoices:
    """The names Zoho admins give a webhook parameter for the field ``name`` (snake_case).

    ``lead_id`` also answers to ``leadId``, ``LeadId``, ``Lead_Id``, ``Lead_ID``, ``LEAD_ID`` and
    ``lead-id``, and to ``others`` (e.g. plain ``id``). The first spelling is the documented one.
    """
    words = name.split("_")
    capitalised = [word.capitalize() for word in words]
    forms = [
        name,
        words[0] + "".join(capitalised[1:]),
        "".join(capitalised),
        "_".join(capitalised),
        "_".join([*capitalised[:-1], words[-1].upper()]),
        name.upper(),
        "-".join(words),
        *others,
    ]
    return AliasChoices(*dict.fromkeys(forms))
