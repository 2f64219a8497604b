"""Partners' answers are read up to a size, decoded, over real HTTP: a partner streaming without end
or sending a compressed bomb fails the call as a dropped connection does, and never fills the worker's
memory."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clients.bounded import AnswerTooLarge, answer_hooks, sync_answer_hooks
from clients.dealer_crm import RestDealerCrm
from clients.errors import TransientError
from clients.vtex import VtexClient
from core.dealers import DealerConfig
from core.settings import Settings
from tests.support import serve

LIMIT = 64 * 1024
ORDER = {"orderId": "1480570412001-01", "items": [{"id": str(n), "name": "Pneu aro 15"} for n in range(500)]}
BODY = json.dumps(ORDER).encode()  # within the limit
GZIP_TWICE = gzip.compress(gzip.compress(bytes(LIMIT * 64)))  # a few hundred bytes, 4 MiB once decoded


def zlib_stream(wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(BODY) + compressor.flush()


async def endless(piece: bytes) -> AsyncIterator[bytes]:
    while True:
        yield piece
        await asyncio.sleep(0)


async def endless_gzip_of_zeros() -> AsyncIterator[bytes]:
    """A gzip stream that never ends, each 1 MiB of zeros about 1 KiB on the wire."""
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    while True:
        yield compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
        await asyncio.sleep(0)


def encoded(body: bytes, encoding: str) -> Response:
    return Response(body, media_type="application/json", headers={"Content-Encoding": encoding})


def twice_in_two_headers() -> Response:
    """gzip on gzip, named in two Content-Encoding headers."""
    headers = [(b"content-encoding", b"gzip"), (b"content-encoding", b"gzip")]
    response = Response(GZIP_TWICE, media_type="application/json")
    response.raw_headers.extend(headers)
    return response


def trickled(body: bytes) -> StreamingResponse:
    """The body a byte at a time: a decoder learns what it holds only from later chunks."""

    async def bytes_one_by_one() -> AsyncIterator[bytes]:
        for index in range(len(body)):
            yield body[index : index + 1]

    return StreamingResponse(bytes_one_by_one(), headers={"Content-Encoding": "deflate"})


async def offered(request: Request) -> Response:
    return JSONResponse({"accept_encoding": request.headers.get("accept-encoding")})


PARTNER = Starlette(
    routes=[
        Route("/order", lambda request: Response(BODY, media_type="application/json")),
        Route("/order.gz", lambda request: encoded(gzip.compress(BODY), "gzip")),
        Route("/order.zlib", lambda request: encoded(zlib_stream(zlib.MAX_WBITS), "deflate")),
        Route("/order.deflate", lambda request: encoded(zlib_stream(-zlib.MAX_WBITS), "deflate")),
        Route("/damaged.gz", lambda request: encoded(b"\x1f\x8b\x08\x00not gzip at all", "gzip")),
        Route("/large", lambda request: Response(bytes(LIMIT + 1), media_type="application/json")),
        Route("/endless", lambda request: StreamingResponse(endless(b"[1," * 1000))),
        Route(
            "/bomb.gz",
            lambda request: StreamingResponse(endless_gzip_of_zeros(), headers={"Content-Encoding": "gzip"}),
        ),
        Route(
            "/twice.gz",
            lambda request: encoded(gzip.compress(gzip.compress(bytes(LIMIT * 64))), "gzip, gzip"),
        ),
        Route("/two-headers.gz", lambda request: twice_in_two_headers()),
        Route("/order.br", lambda request: encoded(BODY, "br")),
        Route("/trickled.deflate", lambda request: trickled(zlib_stream(-zlib.MAX_WBITS))),
        Route("/offered", offered),
        Route("/api/oms/pvt/orders/{order_id}", lambda request: StreamingResponse(endless(b"{}"))),
        Route(
            "/api/v1/leads",
            lambda request: StreamingResponse(endless(b"{}"), status_code=201),
            methods=["POST"],
        ),
    ]
)


@pytest.fixture
async def partner() -> AsyncIterator[str]:
    async with serve(PARTNER) as url:
        yield url


@pytest.fixture
async def bounded(partner: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=partner, timeout=10, event_hooks=answer_hooks(LIMIT)) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/order", "/order.gz", "/order.zlib", "/order.deflate", "/trickled.deflate"]
)
async def test_an_answer_within_the_limit_is_read_whole_and_decoded(
    bounded: httpx.AsyncClient, path: str
) -> None:
    response = await bounded.get(path)
    assert response.json() == ORDER
    assert "content-encoding" not in response.headers  # decoded once, here


async def test_requests_offer_only_the_encodings_decoded_within_the_limit(bounded: httpx.AsyncClient) -> None:
    assert (await bounded.get("/offered")).json() == {"accept_encoding": "gzip, deflate"}


@pytest.mark.parametrize("path", ["/large", "/endless", "/bomb.gz"])
async def test_an_answer_past_the_limit_fails_the_call_as_a_dropped_connection(
    bounded: httpx.AsyncClient, partner: str, path: str
) -> None:
    """Declared too long, streamed without end, or a small compressed stream decoding without end: the
    call ends with a transport error naming the partner's origin, not its path (a URL can carry a
    customer's data). Without the bound, the endless answers would never return."""
    async with asyncio.timeout(20):
        with pytest.raises(AnswerTooLarge) as raised:
            await bounded.get(f"{path}?email=ana@example.com")
    assert isinstance(raised.value, httpx.TransportError)
    assert str(raised.value) == f"the answer from {partner} is larger than 65,536 bytes"
    assert (await bounded.get("/order")).json() == ORDER  # the client goes on working


async def test_a_damaged_compressed_answer_is_a_decoding_error(bounded: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.DecodingError, match="damaged"):
        await bounded.get("/damaged.gz")


@pytest.mark.parametrize("path", ["/twice.gz", "/two-headers.gz", "/order.br"])
async def test_an_answer_in_encodings_not_decoded_here_is_not_read(
    bounded: httpx.AsyncClient, path: str
) -> None:
    """gzip on gzip (one header or two) would be decoded by httpx without a limit (a 4 MiB body from
    a few hundred bytes here), and brotli was not offered: such answers are refused unread."""
    with pytest.raises(httpx.DecodingError, match="not one of gzip, deflate"):
        await bounded.get(path)


async def test_a_blocking_client_loading_a_wsdl_is_bounded_too(partner: str) -> None:
    def read(path: str) -> bytes:
        with httpx.Client(base_url=partner, timeout=10, event_hooks=sync_answer_hooks(LIMIT)) as client:
            return client.get(path).content

    assert json.loads(await asyncio.to_thread(read, "/order.gz")) == ORDER
    with pytest.raises(AnswerTooLarge):
        await asyncio.wait_for(asyncio.to_thread(read, "/bomb.gz"), 20)


async def test_partner_clients_retry_an_answer_past_the_limit(
    bounded: httpx.AsyncClient, partner: str
) -> None:
    """VTEX's client names it a transient failure; a dealer's create raises it as the dropped
    connection it is treated as (its activity retries under the same idempotency key)."""
    vtex = VtexClient(bounded, Settings(environment="test", vtex_api_base_url=partner))
    with pytest.raises(TransientError, match="AnswerTooLarge"):
        await vtex.get_order("1480570412001-01")
    rest = RestDealerCrm(bounded, {})
    dealer = DealerConfig(id="d1", name="d1", crm_kind="rest", crm_url=partner, field_mapping={})
    with pytest.raises(AnswerTooLarge):
        await rest.create_lead(dealer, {"Nome": "Ana"}, "5725767000000123456", "lead-key")


def answering(size: int) -> httpx.Client:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * size))
    return httpx.Client(transport=transport, event_hooks=sync_answer_hooks(LIMIT))


def test_an_answer_of_exactly_the_limit_is_read_and_one_byte_more_is_not() -> None:
    with answering(LIMIT) as client:
        assert len(client.get("https://partner.example/").content) == LIMIT
    with answering(LIMIT + 1) as client, pytest.raises(AnswerTooLarge, match=r"https://partner\.example:443"):
        client.get("https://partner.example/")
