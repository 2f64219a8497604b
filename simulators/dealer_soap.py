"""A legacy dealer CRM (DMS) with a SOAP 1.1 document/literal API, described by ``dealer_crm.wsdl``.

Like many legacy systems it does not deduplicate: every ``CreateLead`` stores a new record, so a client
must call ``FindLeadByExternalId`` first to create each lead exactly once. ``WithdrawLead`` takes a lead
back; version 1 of the service (``?wsdl&version=1``), which older DMS installations still run, has no
such operation, and its WSDL does not offer it.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from lxml import etree

from simulators.faults import Fault, rejects_leads, take_fault, take_slow_store
from simulators.state import DealerState, SimulatorState, StateDep

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
LEADS_NS = "urn:dealer-crm:leads:v1"
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
ADDRESS_PLACEHOLDER = "__SOAP_ADDRESS__"

router = APIRouter(prefix="/dealer-soap", tags=["dealer-soap"])


class SoapFault(Exception):
    """A SOAP 1.1 fault to answer with HTTP 500."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@cache
def wsdl_template() -> str:
    """The WSDL shipped with the package, with the address placeholder still in it."""
    return resources.files("simulators").joinpath("dealer_crm.wsdl").read_text(encoding="utf-8")


def dealer_wsdl(public_base_url: str, dealer_id: str) -> str:
    """The WSDL of one dealer's endpoint.

    Args:
        public_base_url: Where clients reach the simulators.
        dealer_id: The dealer.

    Returns:
        The WSDL whose ``soap:address`` is ``<public_base_url>/dealer-soap/<dealer_id>``.
    """
    address = f"{public_base_url.rstrip('/')}/dealer-soap/{quote(dealer_id, safe='')}"
    return wsdl_template().replace(ADDRESS_PLACEHOLDER, escape(address, {'"': "&quot;"}))


def without_withdrawal(wsdl: str) -> str:
    """Version 1 of the WSDL: every element, message and operation of ``WithdrawLead`` left out."""
    root = etree.fromstring(wsdl.encode())
    for node in root.xpath("//*[starts-with(@name, 'WithdrawLead')]"):
        node.getparent().remove(node)
    return str(etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode())  # lxml is untyped


@router.get("/{dealer_id}")
async def get_wsdl(dealer_id: str, request: Request, state: StateDep) -> Response:
    """Serve the WSDL at ``?wsdl`` (not subject to injected faults, so clients can always be built);
    ``&version=1`` serves the first version of the service, without ``WithdrawLead``."""
    if "wsdl" not in {key.lower() for key in request.query_params}:
        return PlainTextResponse("append ?wsdl to get the service description", status_code=404)
    wsdl = dealer_wsdl(state.config.public_base_url, dealer_id)
    if request.query_params.get("version") == "1":
        wsdl = without_withdrawal(wsdl)
    return Response(wsdl, media_type=SOAP_CONTENT_TYPE)


@router.post("/{dealer_id}")
async def soap_call(dealer_id: str, request: Request, state: StateDep) -> Response:
    """Answer one SOAP call: ``FindLeadByExternalId``, ``CreateLead`` or ``WithdrawLead``."""
    dealer = state.dealer(dealer_id)
    dealer.counters.requests += 1
    fault, retry_after = await take_fault(state, dealer_id)
    if fault is not Fault.NONE:
        dealer.counters.faults_served += 1
    # Transient failures come from the web server in front of the DMS: plain HTTP, not SOAP faults.
    if fault is Fault.UNAVAILABLE:
        return PlainTextResponse("Service Unavailable", status_code=503)
    if fault is Fault.RATE_LIMITED:
        return PlainTextResponse(
            "Too Many Requests", status_code=429, headers={"Retry-After": str(retry_after)}
        )
    raw = await request.body()
    try:
        creates = etree.QName(_body_element(raw)).localname == "CreateLead"
        if creates and (delay := take_slow_store(state, dealer_id)):
            return await _stored_late(delay, state, dealer_id, dealer, raw)
        return _answer(state, dealer_id, dealer, raw)
    except SoapFault as exc:
        return soap_fault(exc.code, exc.message)


# Creates a slow DMS stores late: each goes on after its caller gave up (held here until done).
_LATE_STORES: set[asyncio.Task[Response]] = set()


async def _stored_late(
    delay: float, state: SimulatorState, dealer_id: str, dealer: DealerState, raw: bytes
) -> Response:
    """A DMS slow under load: the create is stored ``delay`` seconds after it arrived, then answered; a
    caller that gives up sooner (its connection closed) does not stop the store."""

    async def store() -> Response:
        await asyncio.sleep(delay)
        return _answer(state, dealer_id, dealer, raw)

    task = asyncio.ensure_future(store())
    _LATE_STORES.add(task)
    task.add_done_callback(_LATE_STORES.discard)
    return await asyncio.shield(task)


def _answer(state: SimulatorState, dealer_id: str, dealer: DealerState, raw: bytes) -> Response:
    try:
        return _envelope(_dispatch(state, dealer_id, dealer, raw))
    except SoapFault as exc:
        return soap_fault(exc.code, exc.message)


def _dispatch(state: SimulatorState, dealer_id: str, dealer: DealerState, raw: bytes) -> Any:
    operation = _body_element(raw)
    qname = etree.QName(operation)
    if qname.namespace != LEADS_NS:
        raise SoapFault("Client", f"unknown operation {operation.tag}")
    if qname.localname == "FindLeadByExternalId":
        return _find_lead(dealer, operation)
    if qname.localname == "CreateLead":
        return _create_lead(state, dealer_id, dealer, operation)
    if qname.localname == "WithdrawLead":
        return _withdraw_lead(dealer, operation)
    raise SoapFault("Client", f"unknown operation {qname.localname}")


def _find_lead(dealer: DealerState, operation: Any) -> Any:
    dealer.counters.lookups += 1
    lead = dealer.find_by_external_id(_external_id(operation), active_only=True)  # a withdrawn lead is gone
    values = {"Found": "true", "LeadId": lead.id} if lead else {"Found": "false"}
    return _leads_element("FindLeadByExternalIdResponse", values)


def _create_lead(state: SimulatorState, dealer_id: str, dealer: DealerState, operation: Any) -> Any:
    lead_element = next((child for child in _elements(operation) if _local(child) == "Lead"), None)
    if lead_element is None:
        raise SoapFault("Client", "Lead is required")
    fields = _child_texts(lead_element)
    external_id = fields.get("ExternalId")
    if not external_id:
        raise SoapFault("Client", "Lead/ExternalId is required")
    if rejects_leads(state, dealer_id):
        dealer.counters.rejected += 1
        raise SoapFault("Client", "LeadRejected: dealer does not accept this lead")
    lead = dealer.add_lead("soap", external_id, fields)
    return _leads_element("CreateLeadResponse", {"LeadId": lead.id})


def _withdraw_lead(dealer: DealerState, operation: Any) -> Any:
    """Take the lead back: ``Withdrawn`` true, also when it was already (asking again is safe); false
    for a lead this DMS never had, which leaves nothing to take back."""
    lead = dealer.find_by_external_id(_external_id(operation))
    if lead is not None:
        dealer.withdraw(lead)
    return _leads_element("WithdrawLeadResponse", {"Withdrawn": "true" if lead else "false"})


def _external_id(operation: Any) -> str:
    """The operation's ``ExternalId``, which lookups and withdrawals require."""
    external_id = _child_texts(operation).get("ExternalId")
    if not external_id:
        raise SoapFault("Client", "ExternalId is required")
    return external_id


def _body_element(raw: bytes) -> Any:
    # No entity expansion, no network: the body comes from outside.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        envelope = etree.fromstring(raw, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SoapFault("Client", f"malformed XML: {exc}") from exc
    if envelope.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise SoapFault("Client", "not a SOAP 1.1 Envelope")
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    operations = _elements(body) if body is not None else []
    if len(operations) != 1:
        raise SoapFault("Client", "the SOAP Body must hold exactly one operation element")
    return operations[0]


def _elements(parent: Any) -> list[Any]:
    # Comments and processing instructions have a non-string tag.
    return [child for child in parent if isinstance(child.tag, str)]


def _local(element: Any) -> str:
    name: str = etree.QName(element).localname
    return name


def _child_texts(parent: Any) -> dict[str, str]:
    # Match on local names: old clients often send the children unqualified.
    return {_local(child): (child.text or "").strip() for child in _elements(parent)}


def _leads_element(name: str, values: dict[str, str]) -> Any:
    element = etree.Element(f"{{{LEADS_NS}}}{name}", nsmap={"tns": LEADS_NS})
    for child_name, value in values.items():
        etree.SubElement(element, f"{{{LEADS_NS}}}{child_name}").text = value
    return element


def _envelope(payload: Any, status_code: int = 200) -> Response:
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS, "tns": LEADS_NS})
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body").append(payload)
    content: bytes = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
    return Response(content, status_code=status_code, media_type=SOAP_CONTENT_TYPE)


def soap_fault(code: str, message: str) -> Response:
    """A SOAP 1.1 fault response: HTTP 500, ``faultcode`` ``soap:<code>``.

    Args:
        code: ``Client`` (the request is wrong, do not resend as is) or ``Server``.
        message: The ``faultstring``.

    Returns:
        The response.
    """
    fault = etree.Element(f"{{{SOAP_ENV_NS}}}Fault", nsmap={"soap": SOAP_ENV_NS})
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return _envelope(fault, status_code=500)
