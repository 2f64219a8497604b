"""The VTEX client's reads: an answer in a shape it does not know is refused for good, by name."""

from __future__ import annotations

import httpx
import pytest

from clients.errors import PermanentError
from clients.vtex import VtexClient
from core.settings import Settings

UNREADABLE = [
    httpx.Response(200, text="<html>Loja em manutenção</html>", headers={"content-type": "text/html"}),
    httpx.Response(200, json=["1480570412001-01"]),
    httpx.Response(200, json="ok"),
]


def vtex_serving(answer: httpx.Response) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda request: answer))


@pytest.mark.parametrize("answer", UNREADABLE)
async def test_an_oms_or_catalog_read_in_a_shape_the_hub_cannot_read_is_refused_for_good(
    answer: httpx.Response,
) -> None:
    """A PermanentError: the order's read parks, the sync's page fails by name; a ValueError or a
    TypeError would be retried for ever."""
    async with vtex_serving(answer) as http:
        vtex = VtexClient(http, Settings(environment="test", vtex_api_base_url="https://store.example"))
        with pytest.raises(PermanentError, match="vtex: unexpected order"):
            await vtex.get_order("1480570412001-01")
        with pytest.raises(PermanentError, match="vtex: unexpected body at /api/pricing/prices/7"):
            await vtex.get_price(7)


async def test_a_scroll_page_or_feed_in_a_shape_the_hub_cannot_read_is_refused_for_good() -> None:
    async with vtex_serving(httpx.Response(200, json={"documents": []})) as http:
        vtex = VtexClient(http, Settings(environment="test", vtex_api_base_url="https://store.example"))
        with pytest.raises(PermanentError, match="vtex: unexpected scroll page"):
            await vtex.scroll_customers()
        with pytest.raises(PermanentError, match="vtex: unexpected feed items"):
            await vtex.read_feed()
