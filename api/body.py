"""Reading webhook bodies safely: bounded size, form-encoded or JSON, always a flat object."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, status

FORM = "application/x-www-form-urlencoded"


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes with 413 before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """Zoho webhooks send form-encoded pairs or a raw JSON object; anything else is a 4xx."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not valid UTF-8") from error
    if media_type == FORM:
        return dict(parse_qsl(text, keep_blank_values=True))
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "JSON body must be an object")
        return data
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"content type must be {FORM} or application/json"
    )
