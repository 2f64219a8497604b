"""Dealer CRM adapters against the simulators over HTTP: exactly-once creation and error classes."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from clients.dealer_crm import RestDealerCrm, SoapDealerCrm, keepable_lead_id, map_fields
from clients.errors import ExternalServiceError, PermanentError, TransientError
from clients.pinned import PinnedTransport
from core.dealers import DealerConfig
from core.outbound import AddressRules, check_url
from core.settings import Settings
from core.timeutil import utcnow
from simulators import SimulatorConfig
from simulators import create_app as create_simulators
from simulators.dealer_soap import SOAP_CONTENT_TYPE, dealer_wsdl, soap_fault
from tests.support import PRODUCTION_SETTINGS, free_port, port_of, reserved_port, serve

LEAD = "5725767000000123456"
EMAIL = "rosangela.vasconcellos@example.com.br"


@pytest.fixture
async def sims() -> AsyncIterator[str]:
    reserved = reserved_port()
    async with serve(
        create_simulators(SimulatorConfig(public_base_url=f"http://127.0.0.1:{port_of(reserved)}")), reserved
    ) as url:
        yield url


def dealer(sims: str, kind: str, dealer_id: str = "d1") -> DealerConfig:
    url = f"{sims}/dealer-rest/{dealer_id}" if kind == "rest" else f"{sims}/dealer-soap/{dealer_id}?wsdl"
    return DealerConfig(id=dealer_id, name=dealer_id, crm_kind=kind, crm_url=url, field_mapping={})


def test_mapping_takes_fields_literals_and_lookup_names() -> None:
    lead = {"First_Name": "Ana", "Email": "", "Owner": {"id": "1", "name": "Carla"}}
    mapping = {"Nome": "First_Name", "Email": "Email", "Vendedor": "Owner", "Origem": "=Zoho", "X": "Missing"}
    assert map_fields(mapping, lead) == {"Nome": "Ana", "Vendedor": "Carla", "Origem": "Zoho"}


async def test_soap_adapter_looks_up_before_creating(sims: str, http: httpx.AsyncClient) -> None:
    soap = SoapDealerCrm(10, {})
    try:
        first = await soap.create_lead(dealer(sims, "soap"), {"Nome": "Ana"}, LEAD, "key")
        again = await soap.create_lead(
            dealer(sims, "soap"), {"Nome": "Ana"}, LEAD, "key"
        )  # a retried activity
    finally:
        await soap.aclose()
    assert first == again
    stored = (await http.get(f"{sims}/_control/dealers/d1/leads")).json()
    assert stored["creates_by_external_id"] == {LEAD: 1}


async def test_soap_rejection_is_permanent_and_503_transient(sims: str, http: httpx.AsyncClient) -> None:
    soap = SoapDealerCrm(10, {})
    try:
        await http.post(f"{sims}/_control/faults", json={"target": "d2", "reject": True})
        with pytest.raises(PermanentError, match="LeadRejected"):
            await soap.create_lead(dealer(sims, "soap", "d2"), {}, LEAD, "key")
        await http.post(f"{sims}/_control/faults", json={"target": "d3", "error_5xx_count": 1})
        with pytest.raises(TransientError):
            await soap.create_lead(dealer(sims, "soap", "d3"), {}, LEAD, "key")
    finally:
        await soap.aclose()


async def test_rest_adapter_is_idempotent_and_classifies_errors(sims: str, http: httpx.AsyncClient) -> None:
    rest = RestDealerCrm(http, {"d1": "k1", "d2": "k2"})
    first = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, f"lead-{LEAD}-d1")
    again = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, f"lead-{LEAD}-d1")
    assert first == again
    assert (await http.get(f"{sims}/_control/counters")).json()["dealers"]["d1"]["created"] == 1

    await http.post(
        f"{sims}/_control/faults", json={"target": "d2", "rate_limit_count": 1, "retry_after_seconds": 7}
    )
    with pytest.raises(TransientError) as limited:
        await rest.create_lead(dealer(sims, "rest", "d2"), {}, LEAD, "k")
    assert (limited.value.status_code, limited.value.retry_after) == (429, 7.0)
    await http.post(f"{sims}/_control/faults", json={"target": "d2", "reject": True})
    with pytest.raises(PermanentError) as rejected:
        await rest.create_lead(dealer(sims, "rest", "d2"), {}, LEAD, "k2")
    assert rejected.value.status_code == 422
    with pytest.raises(PermanentError) as unauthorised:  # no API key configured for d3
        await RestDealerCrm(http, {}).create_lead(dealer(sims, "rest", "d3"), {}, LEAD, "k3")
    assert unauthorised.value.status_code == 401


async def test_rest_answers_that_hide_a_created_lead_are_looked_up(
    sims: str, http: httpx.AsyncClient
) -> None:
    """A 2xx without an id, a 409 and a key reused with another body all mean the dealer may have the
    lead: the adapter finds it by its external id instead of failing (which would pass the lead on)."""
    rest = RestDealerCrm(http, {"d1": "k1", "d4": "k4"})
    key = f"lead-{LEAD}-d1"
    await http.post(
        f"{sims}/_control/faults", json={"target": "d1", "answer_without_id_count": 1, "conflict_count": 1}
    )
    without_id = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key)
    conflict = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key)
    changed = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD, "city": "Santos"}, LEAD, key)
    stored = (await http.get(f"{sims}/_control/dealers/d1/leads")).json()
    assert stored["creates_by_external_id"] == {LEAD: 1}
    assert without_id == conflict == changed == stored["leads"][0]["id"]

    # A 409 for a lead the dealer does not show (yet) is worth retrying, never a rejection.
    await http.post(f"{sims}/_control/faults", json={"target": "d4", "conflict_count": 1})
    other = "5725767000000999999"
    with pytest.raises(TransientError) as busy:  # no external id sent, so no lookup can find it
        await rest.create_lead(dealer(sims, "rest", "d4"), {}, other, "k-other")
    assert busy.value.status_code == 409
    retried = await rest.create_lead(dealer(sims, "rest", "d4"), {}, other, "k-other")
    assert (await http.get(f"{sims}/_control/counters")).json()["dealers"]["d4"]["created"] == 1
    assert retried.startswith("CRM-")


async def test_a_create_under_a_key_the_dealer_may_have_forgotten_looks_the_lead_up_first(
    sims: str, http: httpx.AsyncClient
) -> None:
    """A REST dealer keeps an Idempotency-Key for a limited time (commonly a day). A create under a
    key chosen a day ago or more (a run resumed, a delivery retried that long) asks for the lead
    first, so a dealer that forgot the key does not get it twice; a recent key goes straight to the
    create, the key guarding it."""
    rest = RestDealerCrm(http, {"d1": "k1"})
    key = f"lead-{LEAD}-d1"
    created = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key)
    forgotten = await http.delete(f"{sims}/_control/dealers/d1/idempotency-keys")
    assert forgotten.json()["forgotten"] == 1
    chosen = utcnow() - timedelta(hours=25)
    again = await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key, claimed_at=chosen)
    assert again == created
    assert (await http.get(f"{sims}/_control/dealers/d1/leads")).json()["creates_by_external_id"] == {LEAD: 1}
    # Chosen an hour ago: the key is trusted, no lookup (a forgetful dealer would then create it again).
    await http.delete(f"{sims}/_control/dealers/d1/idempotency-keys")
    recent = utcnow() - timedelta(hours=1)
    await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key, claimed_at=recent)
    assert (await http.get(f"{sims}/_control/dealers/d1/leads")).json()["creates_by_external_id"] == {LEAD: 2}
    # A lookup that fails is no answer: the create waits for the next attempt, even where the lookup is
    # refused for good (no key for it here), which must not read as the dealer refusing the lead.
    await http.post(f"{sims}/_control/faults", json={"target": "d1", "error_5xx_count": 1})
    with pytest.raises(TransientError):
        await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key, claimed_at=chosen)
    with pytest.raises(TransientError) as refused:
        await RestDealerCrm(http, {}).create_lead(
            dealer(sims, "rest"), {"external_id": LEAD}, LEAD, key, claimed_at=chosen
        )
    assert "401" in str(refused.value)
    assert (await http.get(f"{sims}/_control/dealers/d1/leads")).json()["creates_by_external_id"] == {LEAD: 2}


@pytest.mark.parametrize(
    ("stored_at", "created"),
    [
        ("2026-11-01T10:00:00-03:00", True),
        ("2026-11-21T10:00:00-03:00", False),
        # Times the hub cannot compare (local time without an offset: 09:00 in Brasília is 12:00 UTC,
        # the claim's; a date alone; a year out of range once in UTC): taken, never created again.
        ("2026-11-20T09:00:10", False),
        ("2026-11-01", False),
        ("0001-01-01T00:00:00+01:00", False),
    ],
)
async def test_a_lookup_before_a_create_takes_no_record_older_than_the_claim(
    stored_at: str, created: bool
) -> None:
    """The dealer holds a record of the lead from before this key was claimed (an earlier delivery,
    withdrawn since): not the lead this key created, so the create goes on. One from after is, and so
    is one whose time cannot be compared."""
    posts: list[httpx.Request] = []

    def dealer_crm(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(
                200, json={"data": [{"id": "CRM-1", "external_id": LEAD, "created_at": stored_at}]}
            )
        posts.append(request)
        return httpx.Response(201, json={"id": "CRM-2"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(dealer_crm)) as client:
        rest = RestDealerCrm(client, {"d1": "k1"})
        claimed = datetime(2026, 11, 20, 12, tzinfo=UTC)
        found = await rest.create_lead(
            dealer("http://dealer.example", "rest"), {}, LEAD, "k", claimed_at=claimed
        )
    assert (found, len(posts)) == (("CRM-2", 1) if created else ("CRM-1", 0))


async def test_a_wsdl_that_sends_calls_to_another_host_is_refused(http: httpx.AsyncClient) -> None:
    """The WSDL is served here, but its soap:address names another port: no call goes there."""
    elsewhere = free_port()
    config = SimulatorConfig(public_base_url=f"http://127.0.0.1:{elsewhere}")
    async with serve(create_simulators(config)) as sims:
        soap = SoapDealerCrm(10, {"d1": "dealer-key"})
        try:
            with pytest.raises(PermanentError, match=f"sends calls to http://127.0.0.1:{elsewhere}"):
                await soap.create_lead(dealer(sims, "soap"), {}, LEAD, "key")
        finally:
            await soap.aclose()


async def test_production_refuses_internal_dealer_urls(sims: str, http: httpx.AsyncClient) -> None:
    production = Settings(**PRODUCTION_SETTINGS)
    rest = RestDealerCrm(http, {}, production.check_outbound_url)
    soap = SoapDealerCrm(10, {}, production.check_outbound_url)
    try:
        for adapter, kind in ((rest, "rest"), (soap, "soap")):
            plain_http = r"refused: http://127\.0\.0\.1:\d+: plain http is refused"
            with pytest.raises(PermanentError, match=plain_http):
                await adapter.create_lead(dealer(sims, kind), {}, LEAD, "key")
        allowed = production.model_copy(
            update={"outbound_plain_http_hosts": ["127.0.0.1"], "outbound_private_hosts": ["127.0.0.1"]}
        )
        created = await RestDealerCrm(http, {"d1": "k1"}, allowed.check_outbound_url).create_lead(
            dealer(sims, "rest"), {}, LEAD, "key"
        )
        assert created
    finally:
        await soap.aclose()
    counters = (await http.get(f"{sims}/_control/counters")).json()
    assert counters["dealers"]["d1"]["created"] == 1  # only the allowed call reached a dealer


async def test_a_dealer_name_that_rebinds_after_the_check_reaches_no_internal_address(
    sims: str, http: httpx.AsyncClient
) -> None:
    """The URL check sees a public address; the connection's own lookup gets 127.0.0.1, where the
    simulators listen: the call is refused, and no dealer sees it."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    def resolver(host: str) -> list[str]:
        return next(answers)

    name = "crm.dealer.example"
    url_check = partial(check_url, production=True, plain_http_hosts=[name], resolver=resolver)
    rules = AddressRules(production=True, resolver=resolver)
    port = sims.rsplit(":", 1)[1]
    rebinding = DealerConfig(
        id="d1", name="d1", crm_kind="rest", crm_url=f"http://{name}:{port}/dealer-rest/d1", field_mapping={}
    )
    async with httpx.AsyncClient(transport=PinnedTransport(rules)) as pinned:
        with pytest.raises(PermanentError, match=r"refused: .*127\.0\.0\.1 is an internal address"):
            await RestDealerCrm(pinned, {"d1": "k1"}, url_check).create_lead(rebinding, {}, LEAD, "key")
    counters = (await http.get(f"{sims}/_control/counters")).json()
    assert counters["dealers"].get("d1", {}).get("created", 0) == 0


# A schema the legacy dealer's WSDL imports, served beside it.
COMMON_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:dealer-crm:common:v1">
  <xsd:simpleType name="Code"><xsd:restriction base="xsd:string"/></xsd:simpleType>
</xsd:schema>
"""
SCHEMA_OPENS = '<xsd:schema targetNamespace="urn:dealer-crm:leads:v1" elementFormDefault="qualified">'


def legacy_dealer(import_from: str = "", fault: tuple[str, str] | None = None) -> tuple[FastAPI, list[str]]:
    """A SOAP dealer serving the simulators' WSDL, importing a schema from ``import_from`` when given,
    and answering every call with ``fault`` (code, message). Returns the app and the paths it served."""
    app, served = FastAPI(), []

    @app.get("/dealer-soap/d1")
    async def wsdl(request: Request) -> Response:
        served.append(request.url.path)
        text = dealer_wsdl(str(request.base_url), "d1")
        if import_from:
            imported = f'<xsd:import namespace="urn:dealer-crm:common:v1" schemaLocation="{import_from}"/>'
            text = text.replace(SCHEMA_OPENS, SCHEMA_OPENS + imported)
        return Response(text, media_type=SOAP_CONTENT_TYPE)

    @app.get("/common.xsd")
    async def schema(request: Request) -> Response:
        served.append(request.url.path)
        return Response(COMMON_XSD, media_type="application/xml")

    @app.post("/dealer-soap/d1")
    async def call(request: Request) -> Response:
        served.append(request.url.path)
        code, message = fault or ("Server", "no faults configured")
        return soap_fault(code, message)

    return app, served


async def test_wsdl_imports_pass_the_url_check_before_they_are_fetched() -> None:
    """The WSDL is allowed, the schema it imports is not (an internal name): it is never fetched."""
    reserved = reserved_port()
    app, served = legacy_dealer(import_from=f"http://localhost:{port_of(reserved)}/common.xsd")
    url_check = partial(
        check_url, production=True, plain_http_hosts=["127.0.0.1", "localhost"], private_hosts=["127.0.0.1"]
    )
    async with serve(app, reserved) as base:
        legacy = DealerConfig(
            id="d1", name="d1", crm_kind="soap", crm_url=f"{base}/dealer-soap/d1?wsdl", field_mapping={}
        )
        refusing = SoapDealerCrm(10, {}, url_check)
        try:
            with pytest.raises(PermanentError, match=r"refused: .*localhost is an internal address"):
                await refusing.create_lead(legacy, {}, LEAD, "key")
        finally:
            await refusing.aclose()
        assert served == ["/dealer-soap/d1"]

        # The same WSDL under a check that allows the import: the schema is fetched (the test can fail).
        allowing = SoapDealerCrm(10, {})
        try:
            with pytest.raises(TransientError):  # this dealer answers every call with a fault
                await allowing.create_lead(legacy, {}, LEAD, "key")
        finally:
            await allowing.aclose()
        assert "/common.xsd" in served


@pytest.mark.parametrize(
    ("code", "message", "error_type", "kept"),
    [
        ("Client", f"LeadRejected: {EMAIL} is already a customer", PermanentError,
         "SOAP fault soap:Client LeadRejected"),
        ("Client", f"Lead of Rosangela <{EMAIL}> exists", PermanentError, "SOAP fault soap:Client"),
        ("Server", f"{EMAIL}: mailbox table locked", TransientError, "SOAP fault soap:Server"),
        ("Server", f"Rosangela: {EMAIL}", TransientError, "SOAP fault soap:Server"),
    ],
)  # fmt: skip
async def test_soap_faults_keep_their_code_and_drop_their_text(
    code: str, message: str, error_type: type[ExternalServiceError], kept: str
) -> None:
    app, _ = legacy_dealer(fault=(code, message))
    async with serve(app) as base:
        legacy = DealerConfig(
            id="d1", name="d1", crm_kind="soap", crm_url=f"{base}/dealer-soap/d1?wsdl", field_mapping={}
        )
        soap = SoapDealerCrm(10, {})
        try:
            with pytest.raises(error_type) as failed:
                await soap.create_lead(legacy, {"Email": EMAIL}, LEAD, "key")
            # A withdrawal's fault is classed the same way: a Client fault is not retried for an hour.
            with pytest.raises(error_type) as withdrawal:
                await soap.withdraw_lead(legacy, None, LEAD, "key")
        finally:
            await soap.aclose()
    assert str(failed.value) == str(withdrawal.value) == f"dealer-crm:d1: {kept}"
    # Nor in what a log of the error prints (its causes included), or what Temporal records of it.
    assert EMAIL not in "".join(traceback.format_exception(failed.value))
    assert "Rosangela" not in "".join(traceback.format_exception(failed.value))


async def test_a_lead_the_dealer_s_wsdl_cannot_take_is_refused_not_retried(
    sims: str, http: httpx.AsyncClient
) -> None:
    """A field mapping naming an element the dealer's WSDL lacks: zeep refuses the request before
    sending it, the same at every retry (six hours of them, before)."""
    soap = SoapDealerCrm(10, {})
    try:
        with pytest.raises(PermanentError) as refused:
            await soap.create_lead(dealer(sims, "soap"), {"Celular": "+55 11 97777-1234"}, LEAD, "key")
    finally:
        await soap.aclose()
    assert str(refused.value) == "dealer-crm:d1: the dealer's WSDL does not take this request: TypeError"
    assert (await http.get(f"{sims}/_control/counters")).json()["dealers"]["d1"]["created"] == 0


async def test_a_withdrawal_whose_lookup_fails_is_retried_not_recorded() -> None:
    """A drop without the dealer's id of the lead looks it up by external id first. A lookup that fails
    (503, a timeout) must not read as "the CRM holds none": the drop would be recorded, the dealer passed
    over no more, and the CRM would keep the lead."""
    found = {"data": [{"id": "CRM-7", "external_id": LEAD}]}
    answers = [httpx.Response(503), httpx.Response(200, json=found)]
    deleted: list[str] = []

    def crm(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            deleted.append(request.url.path)
            return httpx.Response(204)
        return answers.pop(0)

    url = "http://crm.example/d1"
    config = DealerConfig(id="d1", name="d1", crm_kind="rest", crm_url=url, field_mapping={})
    async with httpx.AsyncClient(transport=httpx.MockTransport(crm)) as client:
        rest = RestDealerCrm(client, {"d1": "k1"})
        with pytest.raises(TransientError):
            await rest.withdraw_lead(config, None, LEAD, f"lead-{LEAD}-d1")
        assert deleted == []
        assert await rest.withdraw_lead(config, None, LEAD, f"lead-{LEAD}-d1") == "withdrawn"
        assert deleted == ["/d1/api/v1/leads/CRM-7"]
        # The CRM answers that it holds no such lead, or has no lookup: only recorded.
        answers[:] = [httpx.Response(200, json={"data": []}), httpx.Response(404)]
        assert await rest.withdraw_lead(config, None, LEAD, "k") == "recorded"
        assert await rest.withdraw_lead(config, None, LEAD, "k") == "recorded"
        # An answer the hub cannot read, or a refusal, is no "none" either: it is refused for good.
        answers[:] = [
            httpx.Response(200, text="<html>"),
            httpx.Response(200, json={"data": {"id": "CRM-7", "external_id": LEAD}}),  # not a list
            httpx.Response(200, json={"leads": [{"id": "CRM-7", "external_id": LEAD}]}),  # no data
            httpx.Response(200, json={"data": [{"external_id": LEAD}]}),  # the match has no id
            httpx.Response(403),
        ]
        for _ in range(5):
            with pytest.raises(PermanentError):
                await rest.withdraw_lead(config, None, LEAD, "k")
        assert deleted == ["/d1/api/v1/leads/CRM-7"]  # no other DELETE


async def test_a_status_read_without_the_dealers_id_looks_the_lead_up_first(
    sims: str, http: httpx.AsyncClient
) -> None:
    """A create answer that carried no id leaves the hub without the dealer's id of the lead: its status
    is read all the same, the lead found by its external id (it was never read before)."""
    rest = RestDealerCrm(http, {"d1": "k1"})
    await rest.create_lead(dealer(sims, "rest"), {"external_id": LEAD}, LEAD, f"lead-{LEAD}-d1")
    assert await rest.lead_status(dealer(sims, "rest"), "", external_id=LEAD) is None  # nothing done yet
    spec = {"status": "accepted", "callback": False}
    (await http.post(f"{sims}/_control/dealers/d1/leads/{LEAD}/status", json=spec)).raise_for_status()
    reported = await rest.lead_status(dealer(sims, "rest"), "", external_id=LEAD)
    assert reported is not None and reported.status == "accepted"
    assert await rest.lead_status(dealer(sims, "rest"), "", external_id="5725767000000999999") is None


async def test_a_status_read_that_times_out_is_a_transient_failure() -> None:
    """As the adapters' other failures: retried, its cause named, not a stack of the HTTP client's."""

    def crm(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    config = DealerConfig(
        id="d1", name="d1", crm_kind="rest", crm_url="http://crm.example/d1", field_mapping={}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(crm)) as client:
        with pytest.raises(TransientError, match="status read failed: ReadTimeout"):
            await RestDealerCrm(client, {}).lead_status(config, "CRM-7")


def test_a_dealers_lead_id_the_portal_cannot_store_is_kept_as_none() -> None:
    """PostgreSQL stores no NUL and the column holds 200 characters: such an id is left out (the lead is
    found by its external id), where recording the delivery failed at every retry."""
    assert keepable_lead_id("crm-42") == "crm-42"
    assert keepable_lead_id("x" * 200) == "x" * 200
    assert keepable_lead_id("x" * 201) == ""
    assert keepable_lead_id("crm\x0042") == ""
