"""The SOAP dealer CRM, driven by a real zeep client over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree
from zeep.exceptions import Fault, TransportError
from zeep.transports import AsyncTransport

from simulators import create_app
from tests.simulators.conftest import live_server, make_config

DEALER = "dealer-rj"
EXTERNAL_ID = "5725767000000412001"
LEAD = {"ExternalId": EXTERNAL_ID, "Nome": "João", "Sobrenome": "Conceição", "UF": "RJ", "Modelo": "Tracker"}


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with live_server(lambda base: create_app(make_config(public_base_url=base))) as url:
        yield url


@pytest.fixture
async def control(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        await client.post("/_control/reset")
        yield client


@pytest.fixture
async def soap(sim_url: str, control: httpx.AsyncClient) -> AsyncIterator[Any]:
    transport = AsyncTransport(client=httpx.AsyncClient(), wsdl_client=httpx.Client())
    client = zeep.AsyncClient(f"{sim_url}/dealer-soap/{DEALER}?wsdl", transport=transport)
    yield client.service
    await transport.aclose()
    transport.wsdl_client.close()


async def test_wsdl_points_at_the_dealer_endpoint(sim_url: str, control: httpx.AsyncClient) -> None:
    response = await control.get(f"/dealer-soap/{DEALER}?wsdl")
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    wsdl = etree.fromstring(response.content)
    [address] = wsdl.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == f"{sim_url}/dealer-soap/{DEALER}"
    assert wsdl.get("targetNamespace") == "urn:dealer-crm:leads:v1"


async def test_find_then_create_exactly_once(soap: Any, control: httpx.AsyncClient) -> None:
    before = await soap.FindLeadByExternalId(ExternalId=EXTERNAL_ID)
    assert (before.Found, before.LeadId) == (False, None)

    lead_id = await soap.CreateLead(Lead=LEAD)
    assert lead_id.startswith("CRM-")

    after = await soap.FindLeadByExternalId(ExternalId=EXTERNAL_ID)
    assert (after.Found, after.LeadId) == (True, lead_id)

    stored = (await control.get(f"/_control/dealers/{DEALER}/leads")).json()
    assert stored["creates_by_external_id"] == {EXTERNAL_ID: 1}
    [lead] = stored["leads"]
    assert lead["channel"] == "soap"
    assert lead["fields"]["Sobrenome"] == "Conceição"
    counters = (await control.get("/_control/counters")).json()["dealers"][DEALER]
    assert (counters["lookups"], counters["created"], counters["requests"]) == (2, 1, 3)


async def test_create_does_not_deduplicate(soap: Any, control: httpx.AsyncClient) -> None:
    first = await soap.CreateLead(Lead=LEAD)
    second = await soap.CreateLead(Lead=LEAD)
    assert first != second
    stored = (await control.get(f"/_control/dealers/{DEALER}/leads")).json()
    assert stored["creates_by_external_id"] == {EXTERNAL_ID: 2}


async def test_transient_faults_are_plain_http(soap: Any, control: httpx.AsyncClient) -> None:
    spec = {"target": DEALER, "error_5xx_count": 1, "rate_limit_count": 1}
    await control.post("/_control/faults", json=spec)
    with pytest.raises(TransportError) as unavailable:
        await soap.CreateLead(Lead=LEAD)
    assert unavailable.value.status_code == 503
    with pytest.raises(TransportError) as limited:
        await soap.CreateLead(Lead=LEAD)
    assert limited.value.status_code == 429
    assert await soap.CreateLead(Lead=LEAD)
    counters = (await control.get("/_control/counters")).json()["dealers"][DEALER]
    assert (counters["faults_served"], counters["created"]) == (2, 1)


async def test_reject_is_a_client_fault(soap: Any, control: httpx.AsyncClient) -> None:
    await control.post("/_control/faults", json={"target": DEALER, "reject": True})
    with pytest.raises(Fault) as rejected:
        await soap.CreateLead(Lead=LEAD)
    assert rejected.value.code == "soap:Client"
    assert rejected.value.message.startswith("LeadRejected:")
    # Lookups still work while the dealer rejects leads.
    assert (await soap.FindLeadByExternalId(ExternalId=EXTERNAL_ID)).Found is False
    counters = (await control.get("/_control/counters")).json()["dealers"][DEALER]
    assert (counters["rejected"], counters["created"]) == (1, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b"<Envelope/>",
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>',
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<DeleteLead xmlns="urn:dealer-crm:leads:v1"/></soap:Body></soap:Envelope>',
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<CreateLead xmlns="urn:dealer-crm:leads:v1"><Lead><Nome>Ana</Nome></Lead></CreateLead>'
        b"</soap:Body></soap:Envelope>",
    ],
)
async def test_malformed_requests_get_a_client_fault(control: httpx.AsyncClient, body: bytes) -> None:
    response = await control.post(
        f"/dealer-soap/{DEALER}", content=body, headers={"Content-Type": "text/xml"}
    )
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    fault = etree.fromstring(response.content).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault.findtext("faultcode") == "soap:Client"
    assert fault.findtext("faultstring")
    stored = (await control.get(f"/_control/dealers/{DEALER}/leads")).json()
    assert stored["leads"] == []
