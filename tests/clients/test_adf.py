"""ADF/XML documents: the structure dealers' systems read, the key that makes a re-send recognisable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from clients.adf import ADF_SOURCE, AdfDealerCrm, SmtpRelay, adf_document, message_id
from clients.errors import PermanentError, TransientError
from core.dealers import ADF_TARGETS, DealerConfig
from simulators.dealer_adf import parse_adf
from tests.support import free_port

DEALER = DealerConfig(
    id="dealer-am", name="Concessionária Manaus & Cia", crm_kind="adf", crm_url="", field_mapping={}
)
FIELDS = {
    "first_name": "Ana",
    "last_name": "O'Neil <Souza>",
    "email": "ana@example.com",
    "mobile": "+55 92 99999-0000",
    "vehicle_make": "Chevrolet",
    "vehicle_model": "Onix",
    "city": "Manaus",
    "state": "AM",
    "comments": "Quer test-drive & financiamento",
    "vendor_email": "vendas@manaus.example",
}
WHEN = datetime(2026, 12, 3, 13, 5, 7, tzinfo=UTC)


def test_the_document_has_the_adf_structure_and_the_hubs_key() -> None:
    document = adf_document(DEALER, FIELDS, "lead-1-dealer-am", WHEN)
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n<adf>')
    lead = parse_adf(document)
    assert (lead.id, lead.source, lead.status) == ("lead-1-dealer-am", ADF_SOURCE, "new")
    assert lead.fields["names"] == {"first": "Ana", "last": "O'Neil <Souza>"}  # escaped, read back as sent
    assert (lead.fields["make"], lead.fields["model"]) == ("Chevrolet", "Onix")
    assert lead.fields["phones"] == ["+55 92 99999-0000"]
    assert lead.fields["vendor"] == "Concessionária Manaus & Cia"
    assert "<requestdate>2026-12-03T13:05:07+00:00</requestdate>" in document
    assert "<year>2026</year>" in document  # a new car: the request's year unless mapped


def test_the_vendor_contact_has_the_dealer_s_inbox_or_its_mapped_address() -> None:
    """ADF's vendor <contact> needs an e-mail or a phone: the mapped one, or a mailto: dealer's inbox."""
    mapped = adf_document(DEALER, FIELDS | {"vendor_phone": "+55 92 3000-0000"}, "k", WHEN)
    assert '<email>vendas@manaus.example</email><phone type="voice">+55 92 3000-0000</phone>' in mapped
    mailed = replace(DEALER, crm_url="mailto:leads@manaus.example")
    without = {k: v for k, v in FIELDS.items() if k != "vendor_email"}
    document = adf_document(mailed, without, "k", WHEN)
    assert "<email>leads@manaus.example</email></contact></vendor>" in document


def test_every_target_an_adf_mapping_may_name_has_a_place_in_the_document() -> None:
    """The rules refuse targets outside ADF_TARGETS; each one they take is somewhere in the document."""
    values = {target: f"v-{index}" for index, target in enumerate(sorted(ADF_TARGETS))}
    values |= {"request_date": WHEN.isoformat(), "vehicle_interest": "lease"}
    document = adf_document(DEALER, values, "lead-1-dealer-am", WHEN)
    assert [t for t, v in values.items() if v not in document and t != "request_date"] == []
    assert 'interest="lease"' in document


def test_the_customer_carries_the_zoho_lead_id_a_dealer_reports_statuses_under() -> None:
    document = adf_document(DEALER, FIELDS, "lead-57-dealer-am", WHEN, lead_id="5725767000000123456")
    assert '<id source="zoho-lead">5725767000000123456</id><comments>' in document
    parse_adf(document)  # customer (contact, id*, comments?): in the DTD's order


def test_a_resend_is_marked_and_keeps_its_id() -> None:
    again = parse_adf(adf_document(DEALER, FIELDS, "lead-1-dealer-am", WHEN, resend=True))
    assert (again.id, again.status) == ("lead-1-dealer-am", "resend")
    assert message_id("lead-1-dealer-am", "leads@hub.example") == message_id(
        "lead-1-dealer-am", "x@hub.example"
    )
    assert message_id("lead-1-dealer-am", "leads@hub.example").endswith("@hub.example>")
    assert message_id("lead-1-dealer-am", "a@b") != message_id("lead-2-dealer-am", "a@b")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"email": "", "mobile": ""}, "neither <email> nor <phone>"),
        ({"vehicle_model": ""}, "<vehicle> has no <model>"),
        ({"first_name": "", "last_name": ""}, "contact has no <name>"),
        ({"vendor_email": ""}, "vendor contact has neither <email> nor <phone>"),
    ],
)
def test_the_structure_check_refuses_what_a_dealer_could_not_use(
    broken: dict[str, str], message: str
) -> None:
    fields = {k: v for k, v in {**FIELDS, **broken}.items() if v}
    with pytest.raises(ValueError, match=message):
        parse_adf(adf_document(DEALER, fields, "lead-1-dealer-am", WHEN))


def test_what_xml_cannot_carry_is_left_out_not_sent_as_an_unreadable_document() -> None:
    """A comment pasted with control characters, or a name with a lone surrogate from Zoho's JSON: the
    document stays well-formed (a receiver would drop it whole) and can be encoded."""
    fields = FIELDS | {"comments": "liga\x0b depois\x1b", "first_name": "Ana\ud83d"}
    document = adf_document(DEALER, fields, "lead-1-dealer-am", WHEN)
    document.encode()
    lead = parse_adf(document)
    assert lead.fields["names"]["first"] == "Ana"
    assert "<comments>liga depois</comments>" in document


@pytest.mark.parametrize(
    ("left_empty", "missing"),
    [
        ({"vehicle_model": ""}, "the vehicle's model"),
        ({"email": "", "mobile": " "}, "the customer's e-mail or phone"),
        ({"first_name": "", "last_name": "\x0b"}, "the customer's name"),
    ],
)
async def test_a_lead_adf_cannot_carry_is_refused_before_it_is_sent(
    left_empty: dict[str, str], missing: str
) -> None:
    """Zoho left a field the dealer's mapping fills empty for this lead: the document would lack what ADF
    requires, which a lead inbox drops after taking the e-mail. The hub refuses the lead for this dealer
    instead (the next dealer may take it), saying what is missing, and sends nothing."""
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(201))
    async with httpx.AsyncClient(transport=transport) as http:
        dealer = replace(DEALER, crm_url="https://dealer.example/adf")
        relay = SmtpRelay("127.0.0.1", 1, "hub@example.com")
        with pytest.raises(PermanentError, match=f"ADF requires {missing}"):
            await AdfDealerCrm(http, relay).create_lead(
                dealer, FIELDS | left_empty, "57", "lead-57-dealer-am"
            )
    assert sent == []


def test_the_message_id_is_in_the_senders_domain_whatever_its_display_name() -> None:
    assert message_id("k", "Hub Leads <leads@hub.example>") == message_id("k", "leads@hub.example")
    assert message_id("k", "Hub Leads <leads@hub.example>").endswith("@hub.example>")


class RefusingInbox:
    """An SMTP server that answers each recipient with the code its address names."""

    async def handle_RCPT(
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("greylisted@"):
            return "450 4.2.0 greylisted, try again later"
        return "550 5.1.1 no such mailbox"


@pytest.mark.parametrize(("inbox", "error"), [("greylisted", TransientError), ("gone", PermanentError)])
async def test_an_inbox_refused_for_now_is_tried_again_one_refused_for_good_is_not(
    inbox: str, error: type[Exception]
) -> None:
    """Greylisting (a 4xx to the recipient) is a delay, not the dealer refusing the lead: read as a
    refusal, the lead would go on to the next dealer while the first gets it once the delay passes."""
    controller = Controller(RefusingInbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        relay = SmtpRelay("127.0.0.1", controller.port, "hub@example.com", starttls=False)
        async with httpx.AsyncClient() as http:
            crm = AdfDealerCrm(http, relay)
            dealer = DealerConfig(
                id="d1", name="d1", crm_kind="adf", crm_url=f"mailto:{inbox}@dealer.example", field_mapping={}
            )
            with pytest.raises(error):
                await crm.create_lead(dealer, FIELDS, "5725767000000123456", "lead-5725767000000123456-d1")
    finally:
        controller.stop()


class Relay:
    """The hub's SMTP relay, answering the step ``refuses`` names (MAIL, RCPT or DATA) with ``reply``."""

    def __init__(self, refuses: str, reply: str) -> None:
        self.refuses, self.reply = refuses, reply

    async def handle_MAIL(
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        return self.reply if self.refuses == "MAIL" else "250 OK"

    async def handle_RCPT(
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return self.reply if self.refuses == "RCPT" else "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        return self.reply if self.refuses == "DATA" else "250 OK"


@pytest.mark.parametrize(
    ("refuses", "reply", "starttls", "error"),
    [
        ("RCPT", "550 5.1.1 no such mailbox", False, PermanentError),  # the dealer's inbox is gone
        ("RCPT", "550 no such user here", False, PermanentError),  # the same, without an enhanced code
        ("RCPT", "554 5.7.1 Relay access denied", False, TransientError),  # the worker left its allowlist
        ("MAIL", "553 5.7.1 sender not allowed", False, TransientError),  # the hub's sender, not the lead
        ("DATA", "554 5.2.0 SendAsDenied", False, TransientError),  # the relay's policy on the sender
        ("MAIL", "553 Sender address not allowed", False, TransientError),  # no enhanced code: the relay's
        (
            "MAIL",
            "553 5.1.8 Sender address rejected",
            False,
            TransientError,
        ),  # a mailbox code, for the sender
        ("DATA", "550 Message rejected", False, TransientError),  # the relay's content policy
        ("RCPT", "550 5.1.1 no such mailbox", True, TransientError),  # STARTTLS asked, none offered
    ],
)
async def test_only_the_dealers_inbox_being_gone_is_a_refusal_not_the_hubs_relay(
    refuses: str, reply: str, starttls: bool, error: type[Exception]
) -> None:
    """The hub speaks to its own relay only: a refusal the relay makes of the hub (its allowlist, its
    sender, its password, STARTTLS) leaves the lead's claim with the dealer and is tried again once the
    relay is fixed. Read as the dealer refusing, every e-mail dealer would lose every lead meanwhile."""
    controller = Controller(Relay(refuses, reply), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        relay = SmtpRelay("127.0.0.1", controller.port, "hub@example.com", starttls=starttls)
        async with httpx.AsyncClient() as http:
            dealer = replace(DEALER, crm_url="mailto:leads@dealer.example")
            with pytest.raises(error):
                await AdfDealerCrm(http, relay).create_lead(
                    dealer, FIELDS, "5725767000000123456", "lead-1-d1"
                )
    finally:
        controller.stop()


async def test_a_receiver_that_already_holds_the_lead_has_it() -> None:
    """A re-send after a lost answer meets a receiver that has the lead under its ADF id (409): the
    dealer has the lead, which must not go on to a second dealer as if it were refused."""
    posted: list[bytes] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        posted.append(request.content)
        return httpx.Response(409, json={"error": "duplicate lead"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        crm = AdfDealerCrm(http, SmtpRelay("127.0.0.1", 25, "hub@example.com"))
        dealer = DealerConfig(
            id="d1", name="d1", crm_kind="adf", crm_url="https://leads.dealer.example/adf", field_mapping={}
        )
        key = "lead-5725767000000123456-d1"
        assert await crm.create_lead(dealer, FIELDS, "5725767000000123456", key, resend=True) == key
    assert len(posted) == 1


def test_the_customer_address_has_the_dtd_s_street_and_order() -> None:
    """ADF's address is (street+, apartment?, city?, regioncode?, postalcode?, country?): a street line
    comes first, empty where none is mapped, so a receiver validating against the DTD takes the lead."""
    mapped = {**FIELDS, "street": "Rua das Flores, 12", "postal_code": "69005-000", "country": "BR"}
    lead = parse_adf(adf_document(DEALER, mapped, "lead-1-dealer-am", WHEN))
    assert lead.fields["address"] == {
        "street": "Rua das Flores, 12",
        "city": "Manaus",
        "regioncode": "AM",
        "postalcode": "69005-000",
        "country": "BR",
    }
    assert '<street line="1">' in adf_document(DEALER, mapped, "lead-1-dealer-am", WHEN)
    assert parse_adf(adf_document(DEALER, FIELDS, "lead-1-dealer-am", WHEN)).fields["address"] == {
        "street": "",
        "city": "Manaus",
        "regioncode": "AM",
    }


@pytest.mark.parametrize(
    "address",
    [
        "<address><city>Manaus</city></address>",
        '<address><street line="1">x</street><regioncode>AM</regioncode><city>Manaus</city></address>',
        '<address><street line="1">x</street><city>a</city><city>b</city></address>',
    ],
)
def test_the_inbox_refuses_an_address_out_of_the_dtd(address: str) -> None:
    document = adf_document(DEALER, {**FIELDS, "city": "", "state": ""}, "lead-1-dealer-am", WHEN)
    broken = document.replace("</phone>", "</phone>" + address, 1)
    with pytest.raises(ValueError, match="address"):
        parse_adf(broken)
