"""Dealers that take leads as ADF/XML (Auto-lead Data Format 1.0): by HTTP POST or in an e-mail.

The document carries the hub's idempotency key in ``<id source="...">``, and an e-mail's Message-ID is
derived from it, so a retried send is recognisable: the dealer's system (and the simulators' inbox)
keeps one lead per id however often it arrives. A re-send is marked ``status="resend"``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import urlsplit
from xml.etree import ElementTree

import aiosmtplib
import httpx

from clients.dealer_crm import RECORDED, SERVICE, UrlCheck, any_http_url, checked, refusals_permanent
from clients.errors import PermanentError, TransientError, raise_for_status
from core.dealers import DealerConfig, adf_missing
from core.tracing import client_span

ADF_SOURCE = "integrations-hub"  # the <id source>: the same for every lead the hub sends
ZOHO_LEAD_SOURCE = "zoho-lead"  # the customer's <id source>: the lead's id in Zoho
ADF_CONTENT_TYPE = "application/xml"
# Dealer fields (the field mapping's targets) that have a place in the ADF document.
CUSTOMER_NAME = {"first_name": "first", "last_name": "last", "full_name": "full"}
VEHICLE = ("year", "make", "model", "trim")
PHONE_TYPES = {"phone": "voice", "mobile": "cellphone"}


def adf_document(
    dealer: DealerConfig,
    fields: Mapping[str, str],
    idempotency_key: str,
    request_date: datetime,
    *,
    resend: bool = False,
    lead_id: str = "",
) -> str:
    """The ADF 1.0 document of one lead: prospect (id, requestdate, vehicle, customer, vendor, provider).

    ``fields`` are the lead mapped with the dealer's field mapping, under the names above (``vehicle_``
    prefixed for the vehicle, ``street``/``city``/``state``/``postal_code``/``country`` for the address,
    ``comments``). ``lead_id``: the Zoho lead's id, in ``<customer><id source="zoho-lead">``, which a
    dealer reporting statuses to the hub's webhook puts in its URL.
    """
    adf = ElementTree.Element("adf")
    prospect = ElementTree.SubElement(adf, "prospect", status="resend" if resend else "new")
    _text(prospect, "id", idempotency_key, sequence="1", source=ADF_SOURCE)
    _text(prospect, "requestdate", request_date.isoformat(timespec="seconds"))
    vehicle = ElementTree.SubElement(
        prospect, "vehicle", interest=fields.get("vehicle_interest", "buy"), status="new"
    )
    for part in VEHICLE:
        default = str(request_date.year) if part == "year" else None
        if value := fields.get(f"vehicle_{part}", default):
            _text(vehicle, part, value)
    customer = ElementTree.SubElement(prospect, "customer")
    contact = ElementTree.SubElement(customer, "contact")
    for name, part in CUSTOMER_NAME.items():
        if value := fields.get(name):
            _text(contact, "name", value, part=part)
    if email := fields.get("email"):
        _text(contact, "email", email)
    for name, kind in PHONE_TYPES.items():
        if value := fields.get(name):
            _text(contact, "phone", value, type=kind)
    if any(fields.get(name) for name in ("street", *ADDRESS)):
        _address(contact, fields)
    if lead_id:
        _text(customer, "id", lead_id, source=ZOHO_LEAD_SOURCE)
    if comments := fields.get("comments"):
        _text(customer, "comments", comments)
    vendor = ElementTree.SubElement(prospect, "vendor")
    _text(vendor, "id", dealer.id, source=ADF_SOURCE)
    _text(vendor, "vendorname", dealer.name)
    vendor_contact = ElementTree.SubElement(vendor, "contact")  # a name and an e-mail or phone (DTD)
    _text(vendor_contact, "name", dealer.name, part="full")
    inbox = dealer.crm_url.removeprefix("mailto:") if dealer.crm_url.startswith("mailto:") else ""
    if vendor_email := fields.get("vendor_email") or inbox:
        _text(vendor_contact, "email", vendor_email)
    if vendor_phone := fields.get("vendor_phone"):
        _text(vendor_contact, "phone", vendor_phone, type="voice")
    provider = ElementTree.SubElement(prospect, "provider")
    _text(provider, "name", fields.get("provider", "Integrations Hub"), part="full")
    body = ElementTree.tostring(adf, encoding="unicode")
    # The spec's own <?ADF VERSION "1.0"?> is not well-formed XML; receivers accept this form.
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n{body}\n'


# The address's parts after its street line, in the order the DTD gives them (street+, apartment?,
# city?, regioncode?, postalcode?, country?), under the mapped names that fill them.
ADDRESS = {
    "city": "city",
    "state": "regioncode",
    "postal_code": "postalcode",
    "country": "country",
}


def _address(contact: ElementTree.Element, fields: Mapping[str, str]) -> None:
    """The customer's address; its one required part, a street line, is empty where none is mapped (a
    receiver still takes the city and state)."""
    address = ElementTree.SubElement(contact, "address")
    _text(address, "street", fields.get("street", ""), line="1")
    for name, tag in ADDRESS.items():
        if value := fields.get(name):
            _text(address, tag, value)


# What XML 1.0 cannot carry, even escaped (control characters, lone surrogates): a comment pasted with a
# vertical tab would make the whole document unreadable, and a lone surrogate could not even be encoded.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(parent: ElementTree.Element, tag: str, text: str, **attributes: str) -> ElementTree.Element:
    element = ElementTree.SubElement(
        parent, tag, {name: NOT_XML.sub("", value) for name, value in attributes.items()}
    )
    element.text = NOT_XML.sub("", text)
    return element


def xml_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """The mapped lead as ADF can carry it: what XML cannot hold left out, blank values dropped."""
    cleaned = {name: NOT_XML.sub("", value) for name, value in fields.items()}
    return {name: value for name, value in cleaned.items() if value.strip()}


# RFC 3463's enhanced status code at the start of a reply's text: class.subject.detail.
ENHANCED_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Replies that name the recipient's mailbox as the fault where no enhanced code says more (RFC 5321:
# mailbox unavailable, user not local, mailbox name not allowed).
NO_SUCH_MAILBOX = frozenset({550, 551, 553})


def _no_such_inbox(code: int, message: str) -> bool:
    """Whether an SMTP reply says the recipient's mailbox is bad for good: 5.1.x (addressing) or 5.2.1
    (mailbox disabled); without an enhanced code, a 550, 551 or 553. The hub speaks to its relay only,
    so any other refusal (5.7.x relay access or sender policy, 5.2.0, 5.3.x, a 554) may be the relay's,
    never a sign that the dealer refused the lead."""
    enhanced = ENHANCED_STATUS.match(message or "")
    if enhanced is None:
        return code in NO_SUCH_MAILBOX
    kind, subject, detail = (int(part) for part in enhanced.groups())
    return kind == 5 and (subject == 1 or (subject, detail) == (2, 1))


def message_id(idempotency_key: str, sender: str) -> str:
    """The e-mail's Message-ID, the same for every send of one lead to one dealer (in the sender's
    domain; a sender given with a display name, ``Hub <leads@hub.example>``, too)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<adf-{digest}@{parseaddr(sender)[1].rpartition('@')[2] or 'hub.local'}>"


class SmtpRelay:
    """Where ADF e-mails are handed over: an SMTP server with STARTTLS (and a login, if it wants one)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = True,
        username: str = "",
        password: str = "",
        timeout_seconds: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout = timeout_seconds


class AdfDealerCrm:
    """Dealers whose URL is ``http(s)://`` (the ADF POSTed) or ``mailto:`` (the ADF e-mailed)."""

    def __init__(self, http: httpx.AsyncClient, smtp: SmtpRelay, url_check: UrlCheck = any_http_url) -> None:
        self._http = http
        self._smtp = smtp
        self._url_check = url_check

    async def create_lead(
        self,
        dealer: DealerConfig,
        fields: dict[str, str],
        external_id: str,
        idempotency_key: str,
        *,
        resend: bool = False,
        claimed_at: datetime | None = None,  # the inbox knows the document by its id
    ) -> str:
        """Send the lead; the dealer's id of it is the hub's key (ADF receivers answer no id of their own).

        The request date is the mapped ``request_date`` (Zoho's Created_Time), so every send of the lead
        is the same document; a re-send (a retry, or another run of the lead) is marked so."""
        fields = xml_fields(fields)
        # What ADF requires that this lead, mapped, lacks: Zoho left a field the mapping names empty.
        if missing := adf_missing(dealer.crm_url, set(fields)):
            # Refused here, as a receiver would: the dealer cannot take this lead as ADF (the next may).
            missed = ", ".join(missing)
            raise PermanentError(
                f"{SERVICE}:{dealer.id}", f"ADF requires {missed}: the lead, as mapped, has none"
            )
        sent = fields.get("request_date")
        request_date = datetime.fromisoformat(sent) if sent else datetime.now(UTC)
        document = adf_document(
            dealer, fields, idempotency_key, request_date, resend=resend, lead_id=external_id
        )
        if dealer.crm_url.startswith("mailto:"):
            await self._mail(dealer, document, idempotency_key)
        else:
            await self._post(dealer, document, idempotency_key)
        return idempotency_key

    async def withdraw_lead(
        self, dealer: DealerConfig, dealer_lead_id: str | None, external_id: str, idempotency_key: str
    ) -> str:
        """ADF has no withdrawal: the hub records it (support tells the dealer if it must)."""
        return RECORDED

    async def _post(self, dealer: DealerConfig, document: str, idempotency_key: str) -> None:
        service = f"{SERVICE}:{dealer.id}"
        checked(service, self._url_check, dealer.crm_url)
        headers = {"Content-Type": ADF_CONTENT_TYPE, "Idempotency-Key": idempotency_key}
        with refusals_permanent(service):
            response = await self._http.post(dealer.crm_url, content=document.encode(), headers=headers)
        if response.status_code == 409:
            # The receiver holds a lead under this ADF id already: an earlier send whose answer was lost.
            # Taken as a refusal, the lead would go on to a second dealer while this one has it.
            return
        raise_for_status(service, response)

    async def _mail(self, dealer: DealerConfig, document: str, idempotency_key: str) -> None:
        service = f"{SERVICE}:{dealer.id}"
        recipient = urlsplit(dealer.crm_url).path
        if "@" not in recipient:
            raise PermanentError(service, "the dealer's mailto: URL names no address")
        relay = self._smtp
        message = EmailMessage()
        message["From"] = relay.sender
        message["To"] = recipient
        message["Subject"] = "ADF lead"  # the lead's data stays in the body: subjects are logged widely
        message["Message-ID"] = message_id(idempotency_key, relay.sender)
        message.set_content(document, subtype="plain", charset="utf-8")
        span: dict[str, str | int] = {
            "server.address": relay.host,
            "server.port": relay.port,
            "hub.dealer_id": dealer.id,
        }
        try:
            with client_span("SMTP send", span):  # the inbox's address stays out: it may be a person's
                await aiosmtplib.send(
                    message,
                    hostname=relay.host,
                    port=relay.port,
                    start_tls=relay.starttls,
                    username=relay.username or None,
                    password=relay.password or None,
                    timeout=relay.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as error:
            # The dealer's inbox does not exist: the dealer refuses the lead. Anything else (greylisting,
            # the relay's policy): try again later. Only the codes: texts echo addresses.
            refused = error.recipients
            gone = bool(refused) and all(_no_such_inbox(each.code, each.message) for each in refused)
            codes = [each.code for each in refused]
            kind = PermanentError if gone else TransientError
            raise kind(service, f"SMTP recipient refused: {max(codes, default=0)}") from None
        except aiosmtplib.SMTPSenderRefused as error:
            # MAIL FROM refused (even as 5.1.7/5.1.8): the hub's sender, never the dealer's inbox.
            raise TransientError(service, f"SMTP sender refused: {error.code}", error.code) from None
        except aiosmtplib.SMTPResponseException as error:
            # The hub's own relay refused the hub (a rotated password, the sender not allowed, relay access
            # denied, a refused greeting or message): the dealer refused nothing, so the lead keeps its
            # claim and the send is retried once the relay is fixed. The Web UI shows the attempts.
            # Only an enhanced code naming the mailbox counts as the dealer's: a bare 550 or 553 here
            # ("sender address not allowed", "message rejected") is the relay refusing the hub.
            enhanced = ENHANCED_STATUS.match(error.message or "") is not None
            kind = (
                PermanentError if enhanced and _no_such_inbox(error.code, error.message) else TransientError
            )
            raise kind(service, f"SMTP {error.code}", error.code) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            # SMTPNotSupported (the relay offers no STARTTLS) is the relay's set-up too.
            # A timeout here may hide a delivered message: the retry carries the same id and Message-ID.
            raise TransientError(service, f"SMTP {type(error).__name__}") from None
