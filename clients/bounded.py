"""Partners' answers read only up to a size.

httpx reads the whole body of every call the hub makes before the hub looks at it. A partner answering
with gigabytes, by a bug or on purpose, would take the worker down with every run it holds. A client
given :func:`answer_hooks` stops reading at the limit and raises :class:`AnswerTooLarge`, a transport
error: the call failed as a dropped connection does, so its step retries it under its usual policy and
parks where the answer stays that large. The limit counts the answer as decoded: gzip and deflate are
decoded here within it (a small compressed answer can grow a thousandfold), and requests offer no
other encoding.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx

from core.outbound import origin

# The encodings decoded here, and so the only ones a request offers.
OFFERED_ENCODINGS = "gzip, deflate"
DECODED_HERE = frozenset({"gzip", "x-gzip", "deflate"})
# The most a compressed chunk is decoded into at once: the limit is checked between pieces.
PIECE = 64 * 1024


class AnswerTooLarge(httpx.ReadError):
    """A partner's answer passed the size the hub reads."""


class _Decoder:
    """gzip or deflate, decoded in pieces of at most :data:`PIECE` bytes. HTTP's deflate is meant to
    be zlib-wrapped; servers that send it raw are understood too, as httpx itself does."""

    def __init__(self, encoding: str) -> None:
        self._raw_fallback = encoding == "deflate"
        # 32 + MAX_WBITS: a zlib or gzip header, whichever the answer has.
        self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._head = b""  # what was fed before the first decoded byte: fed again to a raw decoder

    def pieces(self, data: bytes) -> Iterator[bytes]:
        if self._raw_fallback:
            self._head += data
        while data:
            try:
                piece = self._zlib.decompress(data, PIECE)
            except zlib.error as error:
                if self._raw_fallback:  # nothing decoded yet: it may be raw deflate, from its start
                    self._raw_fallback = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    data, self._head = self._head, b""
                    continue
                raise httpx.DecodingError(f"the answer's compressed body is damaged: {error}") from None
            data = self._zlib.unconsumed_tail
            if piece:
                self._raw_fallback, self._head = False, b""
                yield piece

    def rest(self) -> Iterator[bytes]:
        if tail := self._zlib.flush():
            yield tail


class _BoundedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The answer's body, decoded here where compressed, ending in :class:`AnswerTooLarge` past the
    limit."""

    def __init__(self, raw: Any, limit: int, decoder: _Decoder | None, request: httpx.Request) -> None:
        self._raw = raw
        self._limit = limit
        self._decoder = decoder
        self._request = request
        self._size = 0

    def _counted(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._size += len(piece)
            if self._size > self._limit:
                raise too_large(self._request, self._limit)
            yield piece

    def _decoded(self, chunk: bytes) -> Iterator[bytes]:
        return self._counted(self._decoder.pieces(chunk) if self._decoder else iter((chunk,)))

    def _end(self) -> Iterator[bytes]:
        return self._counted(self._decoder.rest() if self._decoder else iter(()))

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._raw:
            yield from self._decoded(chunk)
        yield from self._end()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw:
            for piece in self._decoded(chunk):
                yield piece
        for piece in self._end():
            yield piece

    def close(self) -> None:
        self._raw.close()

    async def aclose(self) -> None:
        await self._raw.aclose()


def too_large(request: httpx.Request, limit: int) -> AnswerTooLarge:
    # The origin only: a URL's path and query can carry a lead's or an order's data.
    where = origin(str(request.url))
    return AnswerTooLarge(f"the answer from {where} is larger than {limit:,} bytes", request=request)


def _offer_decodable(request: httpx.Request) -> None:
    request.headers["Accept-Encoding"] = OFFERED_ENCODINGS


def _bound(response: httpx.Response, limit: int) -> None:
    """Hand ``response`` a body that ends at ``limit`` decoded bytes, or raise at once when its
    declared length is over or its encoding is not one decoded here."""
    encodings = [
        name.strip().lower()
        for value in response.headers.get_list("Content-Encoding")
        for name in value.split(",")
        if name.strip().lower() not in ("", "identity")
    ]
    declared = response.headers.get("Content-Length", "").strip()
    if not encodings and declared.isdigit() and int(declared) > limit:
        raise too_large(response.request, limit)
    decoder = None
    if encodings:
        # Stacked encodings (gzip twice) or one not offered (br): httpx would decode them without a
        # limit, so they are not read at all.
        if len(encodings) > 1 or encodings[0] not in DECODED_HERE:
            raise httpx.DecodingError(
                f"the answer is encoded as {', '.join(encodings)}, not one of {OFFERED_ENCODINGS}",
                request=response.request,
            )
        decoder = _Decoder(encodings[0])
        # Decoded here: httpx must not decode it again, and the length was the compressed one.
        del response.headers["Content-Encoding"]
        response.headers.pop("Content-Length", None)
    response.stream = _BoundedStream(response.stream, limit, decoder, response.request)


def answer_hooks(limit: int) -> dict[str, list[Callable[..., Awaitable[None]]]]:
    """``event_hooks`` for an ``httpx.AsyncClient`` whose answers are read up to ``limit`` bytes."""

    async def offer_decodable(request: httpx.Request) -> None:
        _offer_decodable(request)

    async def bound(response: httpx.Response) -> None:
        _bound(response, limit)  # httpx closes the answer when a hook raises

    return {"request": [offer_decodable], "response": [bound]}


def sync_answer_hooks(limit: int) -> dict[str, list[Callable[..., None]]]:
    """:func:`answer_hooks` for a blocking ``httpx.Client`` (zeep loads WSDLs with one)."""

    def bound(response: httpx.Response) -> None:
        _bound(response, limit)

    return {"request": [_offer_decodable], "response": [bound]}
