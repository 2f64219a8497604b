"""Dealer CRM adapters: map a Zoho lead to the dealer's fields and create it there exactly once.

REST dealers deduplicate on the ``Idempotency-Key`` header. SOAP dealers (legacy DMSs) do not, so the
SOAP adapter looks the lead up by its external id before creating it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from clients.bounded import answer_hooks, sync_answer_hooks
from clients.errors import (
    ExternalServiceError,
    PermanentError,
    TransientError,
    as_code,
    describe,
    error_code,
    leading_code,
    raise_for_status,
    readable_body,
)
from clients.pinned import PinnedSyncTransport, PinnedTransport
from core.constants import PARTNER_ANSWER_MAX_BYTES
from core.dealers import DealerConfig
from core.outbound import AddressRules, RefusedUrl, check_url, origin
from core.timeutil import CLOCK_SKEW, as_utc, utcnow

if TYPE_CHECKING:
    # zeep and lxml (about 9 MiB a process) load with the first SOAP dealer's call
    # (SoapDealerCrm): a worker whose dealers are REST or ADF never loads them.
    import zeep

SERVICE = "dealer-crm"
# The REST dealer's error code for a key already used with another body.
KEY_REUSED = "idempotency_key_reused"
# How long a REST dealer is taken to keep an Idempotency-Key (commonly a day), less a margin: a create
# under a key older than this may be made again, so the lead is looked up first.
KEY_RETENTION = timedelta(hours=23)
# Says whether the hub may call a URL (Settings.check_outbound_url in the worker): dealer URLs come from
# YAML and a SOAP dealer's WSDL names where calls go, and the calls carry the dealer's API key.
UrlCheck = Callable[[str], None]
# Where connections may go outside production (Settings.outbound_rules in the worker): anywhere.
ANY_ADDRESS = AddressRules(production=False)


def any_http_url(url: str) -> None:
    """The check outside production: any http(s) URL."""
    check_url(url, production=False)


@contextmanager
def refusals_permanent(service: str) -> Iterator[None]:
    """A URL the hub may not call, refused by its check or when connecting (its name resolved to an
    internal address), fails permanently: retrying cannot change the configuration."""
    try:
        yield
    except RefusedUrl as refused:
        raise PermanentError(service, f"refused: {refused}") from refused


@contextmanager
def soap_errors(service: str) -> Iterator[None]:
    """A SOAP call's failures as the hub classes them. None is chained: Temporal's failures and logged
    tracebacks would carry the dealer's text, which echoes what it was sent.

    - a Fault: SOAP 1.1's Client fault blames the request (permanent), a Server fault the service;
    - an HTTP error answer (``TransportError``): by its status (zeep keeps no headers: no Retry-After).
    """
    from zeep.exceptions import Fault, TransportError  # loaded with the dealer's client

    try:
        yield
    except Fault as fault:
        kind = PermanentError if "client" in str(fault.code or "").lower() else TransientError
        raise kind(service, fault_summary(fault), 500) from None
    except TransportError as error:
        raise _by_status(service, error.status_code) from None


def _by_status(service: str, status_code: int) -> ExternalServiceError:
    try:
        raise_for_status(service, httpx.Response(status_code))
    except ExternalServiceError as classified:
        return classified
    return TransientError(service, f"transport error {status_code}")


def takes_request(client: Any, operation: str, service: str, **arguments: Any) -> None:
    """Refuse for good a request the dealer's WSDL cannot take (a mapped field it lacks, a value of
    another type): zeep refuses it before sending, the same at every retry. Built here, apart from the
    call, so that a TypeError from anything else (the answer, the transport) is not taken for this."""
    from zeep.exceptions import ValidationError as SoapValidationError

    try:
        client.create_message(client.service, operation, **arguments)
    except (TypeError, SoapValidationError) as error:
        refused = f"the dealer's WSDL does not take this request: {type(error).__name__}"
        raise PermanentError(service, refused) from None


def checked(service: str, url_check: UrlCheck, url: str) -> None:
    """Refuse a URL the hub may not call (see :func:`refusals_permanent`)."""
    with refusals_permanent(service):
        url_check(url)


def _created(lead: dict[str, Any]) -> datetime | None:
    """When the dealer's record says it created the lead; None where it does not say so with a UTC
    offset (a local time without one, a date, no time at all), which the hub cannot compare."""
    value = lead.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        created = datetime.fromisoformat(value)
        return as_utc(created) if created.tzinfo is not None and "T" in value else None
    except (ValueError, OverflowError):
        return None


def _leads_url(dealer: DealerConfig) -> str:
    """A REST dealer's collection of leads: ``{url}/api/v1/leads``."""
    return f"{dealer.crm_url.rstrip('/')}/api/v1/leads"


def _id_of(response: httpx.Response) -> str:
    """The created lead's id in a dealer's 2xx answer, or "" when it names none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    value = body.get("id") if isinstance(body, dict) else None
    return "" if value in (None, "") else str(value)


# What a withdrawal came to: the CRM dropped the lead, or it cannot, and the hub only recorded it.
WITHDRAWN = "withdrawn"
RECORDED = "recorded"


@dataclass(frozen=True)
class ReportedStatus:
    """A lead's status as the dealer's CRM reports it, and when it took it."""

    status: str  # lower-cased, as the hub's statuses are
    at: datetime | None  # None: the CRM named no time (taken as the read's, as the webhook does)


class DealerCrm(Protocol):
    async def create_lead(
        self,
        dealer: DealerConfig,
        fields: dict[str, str],
        external_id: str,
        idempotency_key: str,
        *,
        resend: bool = False,
        claimed_at: datetime | None = None,
    ) -> str:
        """Create the lead in the dealer's CRM and return the dealer-side id (``resend``: a create under
        this key may have gone out before, from a retry or an earlier run of the lead: ADF marks it a
        re-send, SOAP lets the earlier one land before it looks; ``claimed_at``: when the hub first
        chose this dealer under this key, so no create under it is older)."""
        ...

    async def withdraw_lead(
        self, dealer: DealerConfig, dealer_lead_id: str | None, external_id: str, idempotency_key: str
    ) -> str:
        """Ask the CRM to drop a lead the dealer lost: ``withdrawn``, or ``recorded`` where it cannot."""
        ...


# The longest id of a lead in a dealer's CRM the portal keeps (db.models: dealer_lead_id).
DEALER_LEAD_ID_LIMIT = 200


def keepable_lead_id(dealer_lead_id: str) -> str:
    """The dealer's id of its lead as the hub keeps it: "" (no id, as for an answer that names none: the
    lead is then found by its external id) where the CRM's id holds a NUL character or is longer than
    ``DEALER_LEAD_ID_LIMIT``. PostgreSQL stores neither, and a delivery it cannot record would be retried
    for ever, each retry answered with the same id."""
    if "\x00" in dealer_lead_id or len(dealer_lead_id) > DEALER_LEAD_ID_LIMIT:
        return ""
    return dealer_lead_id


def map_fields(mapping: Mapping[str, Any], lead: Mapping[str, Any]) -> dict[str, str]:
    """The dealer's fields for ``lead``: ``target -> Zoho field``, or ``"=literal"``.

    Missing or empty Zoho fields are left out rather than sent as empty strings.
    """
    fields: dict[str, str] = {}
    for target, source in mapping.items():
        source = str(source)
        if source.startswith("="):
            fields[target] = source[1:]
            continue
        value = lead.get(source)
        if isinstance(value, dict):  # lookups such as Owner: {"id", "name"}
            value = value.get("name")
        if value not in (None, ""):
            fields[target] = str(value)
    return fields


class RestDealerCrm:
    """Dealers with a JSON API: ``POST {url}/api/v1/leads`` with an idempotency key."""

    def __init__(
        self, http: httpx.AsyncClient, api_keys: Mapping[str, str], url_check: UrlCheck = any_http_url
    ) -> None:
        self._http = http
        self._api_keys = api_keys
        self._url_check = url_check

    async def create_lead(
        self,
        dealer: DealerConfig,
        fields: dict[str, str],
        external_id: str,
        idempotency_key: str,
        *,
        resend: bool = False,
        claimed_at: datetime | None = None,
    ) -> str:
        checked(f"{SERVICE}:{dealer.id}", self._url_check, dealer.crm_url)
        headers = {"Idempotency-Key": idempotency_key}
        if key := self._api_keys.get(dealer.id):
            headers["Authorization"] = f"Bearer {key}"
        service = f"{SERVICE}:{dealer.id}"
        leads_url = _leads_url(dealer)
        # A create under this key a day ago or more (a run resumed the next day, a lead sent back to a
        # dealer that holds it) may be forgotten by the dealer with its key: ask before creating.
        if claimed_at is not None and utcnow() - claimed_at >= KEY_RETENTION:
            found = await self._lookup_before_create(service, leads_url, external_id, headers, claimed_at)
            if found:
                return found
        with refusals_permanent(service):
            response = await self._http.post(leads_url, json=fields, headers=headers)
        if response.status_code == 409 or error_code(response) == KEY_REUSED:
            # The dealer knows this key: a create under it is running, or was made with another body (the
            # lead changed in Zoho since). Either way the lead may be there already: never move on blind.
            if found := await self._find(service, leads_url, external_id, headers):
                return found
            if response.status_code == 409:
                raise TransientError(
                    service, f"{describe(response)}: a create under this key is under way", 409
                )
            return ""  # the dealer has a lead under this key; its id is unknown to the hub
        raise_for_status(service, response)
        created = _id_of(response)
        # A 2xx is the dealer's word that it created the lead: never a reason to try another dealer.
        return created or await self._find(service, leads_url, external_id, headers) or ""

    async def withdraw_lead(
        self, dealer: DealerConfig, dealer_lead_id: str | None, external_id: str, idempotency_key: str
    ) -> str:
        """``DELETE {url}/api/v1/leads/{id}``: gone or already gone (404) is withdrawn; repeating is safe."""
        service = f"{SERVICE}:{dealer.id}"
        checked(service, self._url_check, dealer.crm_url)
        leads_url = _leads_url(dealer)
        headers = self._auth(dealer)
        lead_id = dealer_lead_id or await self._lookup(service, leads_url, external_id, headers)
        if not lead_id:
            return RECORDED  # the CRM answered that it holds no such lead: nothing the hub can point at
        with refusals_permanent(service):
            once = {"Idempotency-Key": f"withdraw-{idempotency_key}"}
            response = await self._http.delete(f"{leads_url}/{lead_id}", headers={**headers, **once})
        if response.status_code in (404, 410):
            return WITHDRAWN
        raise_for_status(service, response)
        return WITHDRAWN

    async def lead_status(
        self,
        dealer: DealerConfig,
        dealer_lead_id: str,
        external_id: str = "",
        *,
        earlier_ids: Collection[str] = (),
        created_since: datetime | None = None,
    ) -> ReportedStatus | None:
        """``GET {url}/api/v1/leads/{id}/status``: the dealer's status of the lead; None before it has one.
        Without the dealer's id (its create answer carried none), the lead is looked up by
        ``external_id`` first; None when the CRM holds none. An earlier delivery's record (withdrawn
        since) is not this one: those named ``earlier_ids`` are left out, and, where given, those
        created before ``created_since``."""
        service = f"{SERVICE}:{dealer.id}"
        checked(service, self._url_check, dealer.crm_url)
        leads_url = _leads_url(dealer)
        if not dealer_lead_id and external_id:
            auth = self._auth(dealer)
            found = await self._lookup(
                service, leads_url, external_id, auth, created_since=created_since, excluding=earlier_ids
            )
            dealer_lead_id = found or ""
        if not dealer_lead_id:
            return None
        url = f"{leads_url}/{dealer_lead_id}/status"
        with refusals_permanent(service):
            try:
                response = await self._http.get(url, headers=self._auth(dealer))
            except httpx.HTTPError as error:  # retried as the adapters' failures are, its name logged
                raise TransientError(service, f"status read failed: {type(error).__name__}") from None
        raise_for_status(service, response)
        try:
            body = response.json()
            status, at = body.get("status"), body.get("at")
            if not status:
                return None
            when = None if at is None else datetime.fromisoformat(str(at))
        except (ValueError, AttributeError, TypeError) as error:
            raise PermanentError(service, f"unreadable status answer: {type(error).__name__}", 502) from None
        if when is not None and when.tzinfo is None:  # as the dealers' webhook refuses it: which zone?
            raise PermanentError(service, "unreadable status answer: a time without a UTC offset", 502)
        return ReportedStatus(str(status).strip().lower(), when)

    def _auth(self, dealer: DealerConfig) -> dict[str, str]:
        key = self._api_keys.get(dealer.id)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _find(
        self, service: str, leads_url: str, external_id: str, headers: dict[str, str]
    ) -> str | None:
        """The dealer's id of the lead stored under ``external_id`` (the Zoho id), if it can be read: the
        create's fallbacks, where a failed lookup changes nothing the dealer's answer said."""
        try:
            return await self._lookup(service, leads_url, external_id, headers)
        except ExternalServiceError:
            return None

    async def _lookup_before_create(
        self, service: str, leads_url: str, external_id: str, headers: dict[str, str], claimed_at: datetime
    ) -> str | None:
        """The lead the dealer stored under ``external_id`` since it was claimed under this key. A lookup
        that fails, even for good, is no answer: the create waits for the next attempt, never creating
        blind nor taking the dealer for one that refuses the lead."""
        since = claimed_at - CLOCK_SKEW
        try:
            return await self._lookup(service, leads_url, external_id, headers, created_since=since)
        except ExternalServiceError as error:
            raise TransientError(service, f"lead lookup before a create under an old key: {error}") from None

    async def _lookup(
        self,
        service: str,
        leads_url: str,
        external_id: str,
        headers: dict[str, str],
        *,
        created_since: datetime | None = None,
        excluding: Collection[str] = (),
    ) -> str | None:
        """The dealer's id of the lead stored under ``external_id``; None when the CRM answers that it
        holds none (or has no lookup: 404). A lookup that fails raises (TransientError: timeouts, 429,
        5xx; PermanentError: refusals, an answer it cannot read), never reads as "none": a withdrawal
        would then be recorded while the CRM still holds the lead."""
        auth = {k: v for k, v in headers.items() if k == "Authorization"}
        with refusals_permanent(service):
            try:
                response = await self._http.get(leads_url, params={"external_id": external_id}, headers=auth)
            except httpx.HTTPError as error:
                raise TransientError(service, f"lead lookup failed: {type(error).__name__}") from None
        if response.status_code == 404:
            return None
        raise_for_status(service, response)
        with readable_body(service, response, "lead lookup answer"):
            stored = response.json()["data"] or []
            if not isinstance(stored, list):
                raise TypeError(f"data is a JSON {type(stored).__name__}, not a list")
            records = [lead for lead in stored if isinstance(lead, dict)]
            matches = [lead for lead in records if str(lead.get("external_id")) == external_id]
            # An earlier delivery's record (withdrawn since) is not this one: by its id where the hub
            # knows it, else by its time; a record whose time cannot be compared is kept: taking it is
            # safer than creating the lead again.
            matches = [lead for lead in matches if str(lead.get("id")) not in excluding]
            if created_since is not None:
                matches = [lead for lead in matches if (_created(lead) or created_since) >= created_since]
            if not matches:
                return None
            # The newest (a dealer that took the lead twice); a match without an id is no answer to act on.
            found = max(matches, key=lambda lead: _created(lead) or datetime.min.replace(tzinfo=UTC))["id"]
            if found in (None, ""):
                raise KeyError("id")
        return str(found)


class SoapDealerCrm:
    """Dealers with a SOAP service (``FindLeadByExternalId``, ``CreateLead``), reached through zeep.

    Calls go only to the host the dealer's configured WSDL URL names: a WSDL whose ``soap:address``
    points elsewhere is refused, so a changed or hostile WSDL cannot send the dealer's key and the
    customer's data to another host. The documents the WSDL imports (schemas, other WSDLs) pass the same
    URL check before they are fetched, and every connection goes to an address ``rules`` checked.
    """

    def __init__(
        self,
        timeout_seconds: float,
        api_keys: Mapping[str, str],
        url_check: UrlCheck = any_http_url,
        rules: AddressRules = ANY_ADDRESS,
        answer_limit: int = PARTNER_ANSWER_MAX_BYTES,
        retry_pause_seconds: float | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        # Before a retried create's lookup (create_lead): a call's time unless told less.
        self._retry_pause = timeout_seconds if retry_pause_seconds is None else retry_pause_seconds
        self._answer_limit = answer_limit
        self._api_keys = api_keys
        self._url_check = url_check
        self._rules = rules
        self._clients: dict[str, zeep.AsyncClient] = {}
        self._lock = asyncio.Lock()

    async def create_lead(
        self,
        dealer: DealerConfig,
        fields: dict[str, str],
        external_id: str,
        idempotency_key: str,
        *,
        resend: bool = False,
        claimed_at: datetime | None = None,  # looked up first anyway
    ) -> str:
        service = f"{SERVICE}:{dealer.id}"
        client = await self._client(dealer)
        if resend:
            # SOAP carries no idempotency key: the lookup is what keeps a re-send from creating the lead
            # twice. An earlier create (of this run or an earlier one) may still be landing (a DMS slow
            # under load stores it after the call timed out): look only after a pause as long as a call
            # may take, or what the attempt's time leaves beside its lookup and create
            # (workers.flows.soap_retry_pause).
            await asyncio.sleep(self._retry_pause)
        with refusals_permanent(service), soap_errors(service):
            found = await client.service.FindLeadByExternalId(ExternalId=external_id)
            if found.Found and found.LeadId:
                return str(found.LeadId)
            lead = {**fields, "ExternalId": external_id}
            takes_request(client, "CreateLead", service, Lead=lead)
            created = await client.service.CreateLead(Lead=lead)
        return str(created)

    async def withdraw_lead(
        self, dealer: DealerConfig, dealer_lead_id: str | None, external_id: str, idempotency_key: str
    ) -> str:
        """``WithdrawLead`` where the dealer's WSDL has that operation; otherwise only recorded."""
        service = f"{SERVICE}:{dealer.id}"
        client = await self._client(dealer)
        if not has_operation(client, "WithdrawLead"):
            return RECORDED
        with refusals_permanent(service), soap_errors(service):
            await client.service.WithdrawLead(ExternalId=external_id)
        return WITHDRAWN

    async def _client(self, dealer: DealerConfig) -> zeep.AsyncClient:
        # Parsing a WSDL is slow and blocking: once per dealer per process, off the event loop.
        async with self._lock:
            client = self._clients.get(dealer.id)
            if client is None:
                client = await asyncio.to_thread(self._build_client, dealer)
                self._clients[dealer.id] = client
            return client

    def _build_client(self, dealer: DealerConfig) -> zeep.AsyncClient:
        import zeep.exceptions  # the first SOAP dealer's call loads zeep (and lxml)
        from zeep.transports import AsyncTransport

        service = f"{SERVICE}:{dealer.id}"
        checked(service, self._url_check, dealer.crm_url)
        wsdl_hooks = sync_answer_hooks(self._answer_limit)
        wsdl_hooks["request"].insert(0, self._check_fetch)
        transport = AsyncTransport(  # type: ignore[no-untyped-call]
            client=httpx.AsyncClient(
                timeout=self._timeout,
                transport=PinnedTransport(self._rules),
                event_hooks=answer_hooks(self._answer_limit),
            ),
            wsdl_client=httpx.Client(
                timeout=self._timeout,
                transport=PinnedSyncTransport(self._rules),
                event_hooks=wsdl_hooks,
            ),
        )
        # AsyncTransport replaces the clients' headers, so credentials go in afterwards.
        if key := self._api_keys.get(dealer.id):
            transport.client.headers["Authorization"] = f"Bearer {key}"
        try:
            with refusals_permanent(service):
                client = zeep.AsyncClient(dealer.crm_url, transport=transport)  # type: ignore[no-untyped-call]
        except (httpx.HTTPError, zeep.exceptions.Error) as error:
            raise TransientError(service, f"cannot load WSDL {origin(dealer.crm_url)}: {error}") from error
        for address in soap_addresses(client):
            if origin(address) != origin(dealer.crm_url):
                raise PermanentError(
                    service,
                    f"the WSDL sends calls to {origin(address)}, not to the configured"
                    f" {origin(dealer.crm_url)}: refused",
                )
            checked(service, self._url_check, address)
        return client

    def _check_fetch(self, request: httpx.Request) -> None:
        """zeep fetches the documents a WSDL imports on its own: each one passes the dealer's URL check."""
        self._url_check(str(request.url))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.transport.aclose()
            client.transport.wsdl_client.close()


def fault_summary(fault: zeep.exceptions.Fault) -> str:
    """A SOAP fault as error messages carry it: its code and the machine code its text opens with.

    Never the text itself: dealers write the lead they were sent into it, and these messages reach
    workflow histories and logs.
    """
    code = as_code(str(fault.code or "")) or "(no code)"
    detail = leading_code(str(fault.message or ""))
    return f"SOAP fault {code}" + (f" {detail}" if detail else "")


def has_operation(client: zeep.AsyncClient, name: str) -> bool:
    """Whether any port of the WSDL offers the operation ``name``."""
    return any(
        name in port.binding.all()
        for service in client.wsdl.services.values()
        for port in service.ports.values()
    )


def soap_addresses(client: zeep.AsyncClient) -> list[str]:
    """The ``soap:address`` of every port of every service the WSDL declares."""
    return [
        str(port.binding_options.get("address", ""))
        for service in client.wsdl.services.values()
        for port in service.ports.values()
    ]
