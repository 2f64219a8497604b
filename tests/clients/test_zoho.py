"""The Zoho client's token refresh and record updates: secrets out of URLs, Zoho's answers out of errors."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from activities.leads import FetchLeadResult
from clients.errors import PermanentError, TransientError
from clients.zoho import ZohoClient
from core.deals import deal_from_zoho
from core.settings import Settings
from core.temporal import HubPayloadConverter
from core.timeutil import utcnow
from db.engine import create_engine, session_factory
from db.tokens import DatabaseTokens
from simulators import SimulatorConfig
from simulators import create_app as create_simulators
from tests.support import port_of, reserved_port, serve

EMAIL = "rosangela.vasconcellos@example.com.br"
CLIENT_SECRET = "zc-41d9-not-for-urls"
REFRESH_TOKEN = "1000.rt-77c1-not-for-urls"
LEAD = "5725767000000123456"


@pytest.fixture
async def token_store(sqlite_url: str) -> AsyncIterator[DatabaseTokens]:
    engine = create_engine(sqlite_url)
    yield DatabaseTokens(session_factory(engine))
    await engine.dispose()


def settings_for(base_url: str) -> Settings:
    return Settings(
        environment="test",
        zoho_api_base_url=f"{base_url}/zoho",
        zoho_accounts_url=f"{base_url}/zoho",
        zoho_client_secret=CLIENT_SECRET,
        zoho_refresh_token=REFRESH_TOKEN,
    )


async def test_the_token_refresh_sends_its_secrets_in_a_form_body(
    token_store: DatabaseTokens,
) -> None:
    """URLs reach access logs and traces; Zoho (and the simulator) take the secrets as a form."""
    reserved = reserved_port()
    port = port_of(reserved)
    config = SimulatorConfig(
        public_base_url=f"http://127.0.0.1:{port}",
        zoho_client_secret=CLIENT_SECRET,
        zoho_refresh_token=REFRESH_TOKEN,
    )
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with (
        serve(create_simulators(config), reserved) as sims,
        httpx.AsyncClient(timeout=30, event_hooks={"request": [record]}) as http,
    ):
        token = await ZohoClient(http, settings_for(sims), token_store).access_token()
    assert token  # the simulator accepted the form
    (refresh,) = sent
    assert refresh.headers["content-type"] == "application/x-www-form-urlencoded"
    assert CLIENT_SECRET.encode() in refresh.content and REFRESH_TOKEN.encode() in refresh.content
    assert CLIENT_SECRET not in str(refresh.url) and REFRESH_TOKEN not in str(refresh.url)
    assert not refresh.url.query


def zoho_answering(update: dict[str, Any], token: dict[str, Any] | None = None) -> httpx.MockTransport:
    """Zoho answering token refreshes with ``token`` (a valid one by default), updates with ``update``."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json=token or {"access_token": "1000.abc", "expires_in": 3600})
        return httpx.Response(200, json=update)

    return httpx.MockTransport(answer)


def nothing_personal(error: BaseException) -> None:
    printed = "".join(traceback.format_exception(error))  # what a log of it shows, causes included
    assert EMAIL not in printed and "Rosangela" not in printed


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"code": "INVALID_DATA", "details": {"api_name": "Email", "value": EMAIL},
          "message": f"invalid email {EMAIL} for Rosangela", "status": "error"}, "INVALID_DATA"),
        ({"code": f"DUPLICATE_DATA {EMAIL}", "message": "duplicate", "status": "error"}, "(no code)"),
        ({"message": f"Rosangela <{EMAIL}> is locked", "status": "error"}, "(no code)"),
    ],
)  # fmt: skip
async def test_a_refused_lead_update_keeps_only_zoho_code(
    token_store: DatabaseTokens, result: dict[str, Any], expected: str
) -> None:
    async with httpx.AsyncClient(transport=zoho_answering({"data": [result]})) as http:
        zoho = ZohoClient(http, settings_for("https://zoho.example"), token_store)
        with pytest.raises(PermanentError) as refused:
            await zoho.update_lead(LEAD, {"Email": EMAIL})
    assert str(refused.value) == f"zoho: lead update refused: {expected}"
    nothing_personal(refused.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "invalid_client"}, "invalid_client"),
        ({"error": f"no refresh token for {EMAIL}"}, "(no code)"),
        ({"message": f"account of Rosangela ({EMAIL}) suspended"}, "(no code)"),
    ],
)
async def test_a_refused_token_refresh_keeps_only_the_error_code(
    token_store: DatabaseTokens, body: dict[str, Any], expected: str
) -> None:
    async with httpx.AsyncClient(transport=zoho_answering({}, token=body)) as http:
        zoho = ZohoClient(http, settings_for("https://zoho.example"), token_store)
        with pytest.raises(PermanentError) as refused:
            await zoho.access_token()
    assert str(refused.value) == f"zoho: token refresh refused: {expected}"
    nothing_personal(refused.value)


def zoho_serving(answer: httpx.Response) -> httpx.MockTransport:
    """Zoho answering every call but the token refresh with ``answer``."""

    def serve_one(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.abc", "expires_in": 3600})
        return answer

    return httpx.MockTransport(serve_one)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"data": {"id": LEAD}}),
        httpx.Response(200, json={"data": [None]}),
        httpx.Response(200, json=[{"id": LEAD}]),
        httpx.Response(200, text="<html>Scheduled maintenance</html>", headers={"content-type": "text/html"}),
    ],
)
async def test_a_success_in_a_shape_the_hub_cannot_read_is_refused_for_good(
    token_store: DatabaseTokens, answer: httpx.Response
) -> None:
    """Retrying cannot change what Zoho serves: a PermanentError (the read parks), not a KeyError or a
    ValueError retried for ever."""
    async with httpx.AsyncClient(transport=zoho_serving(answer)) as http:
        zoho = ZohoClient(http, settings_for("https://zoho.example"), token_store)
        with pytest.raises(PermanentError, match="zoho: unexpected Deals record"):
            await zoho.get_deal("5725767000000700001")
        with pytest.raises(PermanentError, match="zoho: unexpected lead update answer"):
            await zoho.update_lead(LEAD, {"Lead_Status": "Contacted"})


async def test_a_token_answer_in_a_shape_the_hub_cannot_read_is_refused_for_good(
    token_store: DatabaseTokens,
) -> None:
    token = {"access_token": "1000.abc", "expires_in": "an hour"}
    async with httpx.AsyncClient(transport=zoho_answering({}, token=token)) as http:
        zoho = ZohoClient(http, settings_for("https://zoho.example"), token_store)
        with pytest.raises(PermanentError, match="zoho: unexpected token answer"):
            await zoho.access_token()


async def test_a_401_a_new_token_cannot_cure_spends_no_refresh(token_store: DatabaseTokens) -> None:
    """The refresh token's grant lacks a scope: every call is refused 401 OAUTH_SCOPE_MISMATCH. A refresh
    per call would spend Zoho's 10 tokens per 10 minutes, and every call would then fail on the quota,
    retried, instead of on the refusal, parked."""
    refreshes: list[str] = []

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            refreshes.append("token")
            return httpx.Response(200, json={"access_token": f"1000.t{len(refreshes)}", "expires_in": 3600})
        return httpx.Response(401, json={"code": "OAUTH_SCOPE_MISMATCH", "message": "invalid oauth scope"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(zoho)) as http:
        client = ZohoClient(http, settings_for("http://zoho.example"), token_store)
        for _ in range(5):
            with pytest.raises(PermanentError, match="OAUTH_SCOPE_MISMATCH"):
                await client.get_lead(LEAD)
    assert refreshes == ["token"]  # the first token only


async def test_a_refresh_refused_for_now_holds_off_the_other_processes(token_store: DatabaseTokens) -> None:
    """Over the token quota: the process that asked keeps the refresh lease for the backoff, so the
    others wait for it instead of each asking the token endpoint again at once."""
    asked: list[str] = []

    def zoho(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        too_many = "You have made too many requests continuously. Please try again after some time."
        return httpx.Response(400, json={"error": "Access Denied", "error_description": too_many})

    async with httpx.AsyncClient(transport=httpx.MockTransport(zoho)) as http:
        first = ZohoClient(http, settings_for("http://zoho.example"), token_store)
        with pytest.raises(TransientError, match="quota"):
            await first.access_token()
        others = [ZohoClient(http, settings_for("http://zoho.example"), token_store) for _ in range(3)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("clients.zoho.LEASE_WAIT_LIMIT", 1.0)
            waits = [other.access_token() for other in others]
            results = await asyncio.gather(*waits, return_exceptions=True)
        assert all(isinstance(result, TransientError) for result in results)
        assert len(asked) == 1  # the token endpoint was asked once
        # A token due for its refresh but still valid is used meanwhile, not waited for.
        name = f"zoho:{settings_for('http://zoho.example').zoho_client_id}"
        await token_store.store(name, "1000.still-valid", utcnow() + timedelta(seconds=120))
        await token_store.release_lease(name, held_until=utcnow() + timedelta(seconds=60))
        assert await others[0].access_token() == "1000.still-valid"
    assert len(asked) == 1


async def test_a_record_holding_half_an_emoji_can_be_passed_to_its_workflow(
    token_store: DatabaseTokens,
) -> None:
    """Zoho's JSON may carry a lone surrogate (a text cut inside an emoji). No UTF-8 encoder takes one:
    the lead's or deal's read could never be handed to its workflow, and was retried for ever. It is
    read as U+FFFD, the replacement character."""
    record = (
        '{"data": [{"id": "5725767000000700001", "Last_Name": "Souza \\ud83d", "Deal_Name": "Onix \\ud83d",'
        ' "Tags": [{"name": "\\ude00vip"}], "Modified_Time": "2026-12-01T10:00:00-03:00"}]}'
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.abc", "expires_in": 3600})
        return httpx.Response(200, content=record.encode(), headers={"content-type": "application/json"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        zoho = ZohoClient(http, settings_for("https://zoho.example"), token_store)
        lead = await zoho.get_lead(LEAD)
        deal = deal_from_zoho(await zoho.get_deal("5725767000000700001") or {})
    assert (
        lead is not None and lead["Last_Name"] == "Souza \ufffd" and lead["Tags"] == [{"name": "\ufffdvip"}]
    )
    assert deal.deal_name == "Onix \ufffd"
    HubPayloadConverter().to_payloads([FetchLeadResult(lead=lead), deal])  # raised before
