"""Dealers that take ADF/XML leads: by HTTP POST, or as e-mails to their lead inbox (an SMTP sink).

Both parse the document, refuse one that breaks the ADF structure, and keep one lead per prospect
``<id>``: a re-sent lead (a retry after a lost answer) is counted as a replay, not a second lead. The
dealer is the path's dealer id, or the local part of the e-mail's recipient (``<dealer id>@...``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from xml.etree import ElementTree

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simulators.state import DealerState, SimulatorState, StateDep

router = APIRouter(prefix="/dealer-adf/{dealer_id}", tags=["dealer-adf"])


@dataclass(frozen=True)
class AdfLead:
    """What the dealer's system reads from a prospect."""

    id: str
    source: str
    status: str
    fields: dict[str, Any]


def parse_adf(document: str) -> AdfLead:
    """The prospect of an ADF 1.0 document; ValueError naming what breaks the structure.

    The structure checked: ``adf`` holds a ``prospect`` with an ``id`` (``source`` attribute), an
    ISO 8601 ``requestdate``, a ``vehicle`` with ``make`` and ``model``, a ``customer`` whose
    ``contact`` has a ``name`` and an ``email`` or ``phone`` (and an ``address``, if any, whose parts
    start with a ``street`` and keep the DTD's order), and a ``vendor`` with its ``vendorname`` and a
    ``contact`` with an ``email`` or ``phone``.
    """
    if '<?adf version="1.0"?>' not in document[:200]:
        raise ValueError('missing the <?adf version="1.0"?> processing instruction')
    try:
        # ElementTree resolves no external entities, and expat (2.4.1+) refuses entity expansion
        # attacks; the simulators only ever run on a developer's machine or in tests.
        root = ElementTree.fromstring(document)  # noqa: S314
    except ElementTree.ParseError as error:
        raise ValueError(f"not well-formed XML: {error}") from None
    if root.tag != "adf":
        raise ValueError(f"root element is <{root.tag}>, not <adf>")
    prospect = _one(root, "prospect")
    lead_id = _one(prospect, "id")
    if not (lead_id.text or "").strip() or not lead_id.get("source"):
        raise ValueError("prospect <id> needs a value and a source attribute")
    try:
        datetime.fromisoformat(_text(prospect, "requestdate"))
    except ValueError:
        raise ValueError("requestdate is not ISO 8601") from None
    vehicle = _one(prospect, "vehicle")
    contact = _one(_one(prospect, "customer"), "contact")
    if contact.find("name") is None:
        raise ValueError("customer contact has no <name>")
    if contact.find("email") is None and contact.find("phone") is None:
        raise ValueError("customer contact has neither <email> nor <phone>")
    address = contact.find("address")
    if address is not None:
        _check_address(address)
    vendor = _one(prospect, "vendor")
    vendor_name = _text(vendor, "vendorname")
    vendor_contact = _one(vendor, "contact")
    if vendor_contact.find("email") is None and vendor_contact.find("phone") is None:
        raise ValueError("vendor contact has neither <email> nor <phone>")
    fields = {
        "make": _text(vehicle, "make"),
        "model": _text(vehicle, "model"),
        "names": {name.get("part", "full"): name.text for name in contact.findall("name")},
        "email": contact.findtext("email"),
        "phones": [phone.text for phone in contact.findall("phone")],
        "address": {} if address is None else {part.tag: part.text or "" for part in address},
        "vendor": vendor_name,
    }
    status = prospect.get("status", "new")
    return AdfLead(str(lead_id.text).strip(), str(lead_id.get("source")), status, fields)


# The DTD's address: (street+, apartment?, city?, regioncode?, postalcode?, country?), in this order.
ADDRESS_PARTS = ("street", "apartment", "city", "regioncode", "postalcode", "country")


def _check_address(address: ElementTree.Element) -> None:
    tags = [part.tag for part in address]
    streets = next((n for n, tag in enumerate(tags) if tag != "street"), len(tags))
    if not 1 <= streets <= 5:
        raise ValueError("customer <address> does not start with one to five <street> lines")
    rest = tags[streets:]
    if not set(rest) <= set(ADDRESS_PARTS[1:]) or rest != sorted(set(rest), key=ADDRESS_PARTS.index):
        raise ValueError(f"customer <address> holds {tags}, not the ADF order of {ADDRESS_PARTS}")


def _one(parent: ElementTree.Element, tag: str) -> ElementTree.Element:
    found = parent.find(tag)
    if found is None:
        raise ValueError(f"<{parent.tag}> has no <{tag}>")
    return found


def _text(parent: ElementTree.Element, tag: str) -> str:
    text = (_one(parent, tag).text or "").strip()
    if not text:
        raise ValueError(f"<{parent.tag}><{tag}> is empty")
    return text


def store(dealer: DealerState, lead: AdfLead) -> tuple[str, bool]:
    """Keep the lead once per prospect id; (the dealer's lead id, whether it is new)."""
    if lead.status == "resend":
        dealer.counters.marked_resent += 1
    previous = dealer.find_by_external_id(lead.id)
    if previous is not None:
        dealer.counters.replays += 1
        return previous.id, False
    return dealer.add_lead("adf", lead.id, lead.fields).id, True


@router.post("/leads")
async def receive_adf(dealer_id: str, request: Request, state: StateDep) -> JSONResponse:
    """An ADF document POSTed as ``application/xml``: 200 with the dealer's id, 400 naming what is wrong."""
    dealer = state.dealer(dealer_id)
    dealer.counters.requests += 1
    try:
        lead = parse_adf((await request.body()).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return JSONResponse({"error": "invalid_adf", "message": str(error)}, status_code=400)
    stored, new = store(dealer, lead)
    return JSONResponse({"id": stored, "status": "created" if new else "duplicate"}, status_code=200)


class AdfInbox:
    """aiosmtpd handler: every dealer's lead inbox, in one SMTP server."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content or b""
        raw = content.encode() if isinstance(content, str) else bytes(content)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        try:
            lead = parse_adf(body.get_content() if body is not None else "")
        except ValueError as error:
            return f"554 5.6.0 not an ADF lead: {error}"
        for recipient in envelope.rcpt_tos:
            dealer_id = recipient.partition("@")[0]
            dealer = self._state.dealer(dealer_id)
            dealer.counters.requests += 1
            store(dealer, lead)
            plan = self._state.faults.get(dealer_id)
            if plan is not None and plan.answer_lost_remaining > 0:
                plan.answer_lost_remaining -= 1
                await asyncio.sleep(self._state.config.smtp_lost_answer_seconds)
        return "250 2.0.0 queued"


def start_inbox(state: SimulatorState) -> Controller | None:
    """The SMTP sink on ``config.smtp_port`` (in a thread of its own), or None when the port is 0."""
    if not state.config.smtp_port:
        return None
    controller = Controller(AdfInbox(state), hostname=state.config.smtp_host, port=state.config.smtp_port)
    controller.start()
    return controller
