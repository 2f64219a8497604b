"""In-memory state of one simulator app: every store and counter lives here, none in module globals.

Handlers read and write this state without awaiting in between, so asyncio's single thread keeps each
read-modify-write atomic without a lock.
"""

from __future__ import annotations

import hmac
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from standardwebhooks.webhooks import Webhook

from simulators.config import SimulatorConfig
from simulators.deals import generate_deal
from simulators.leads import BRT, ZOHO_ORG_PREFIX, generate_lead, zoho_timestamp
from simulators.vtex_history import OrderHistory
from simulators.vtex_orders import Store, generate_order
from simulators.vtex_store import CatalogChanges, GeneratedStore

Clock = Callable[[], float]


def same_secret(given: str | None, expected: str) -> bool:
    """Whether a presented credential equals the expected one, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class EarlyReply(Exception):
    """Raised by guards to answer a request at once with a ready-made response (error, fault)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class ZohoCounters:
    """What the project did to Zoho, for tests to assert on."""

    tokens_issued: int = 0
    lead_gets: int = 0
    lead_updates: int = 0
    updates_without_trigger: int = 0
    webhooks_sent: int = 0
    faults_served: int = 0
    deal_gets: int = 0
    deal_updates: int = 0
    deal_webhooks_sent: int = 0
    lead_lists: int = 0  # GET /Leads (the list, e.g. of converted leads)
    conversions: int = 0


SEEDED_FIRST_SEQUENCE = 412001


@dataclass
class ZohoState:
    """Zoho CRM: leads and deals, their update (and stage) histories, OAuth tokens."""

    rng: random.Random
    leads: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Deals draw from their own generator: creating deals does not change the leads a seed gives.
    deal_rng: random.Random = field(default_factory=random.Random)
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    deal_updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stage_history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    token_expiry: dict[str, float] = field(default_factory=dict)
    issued_at: dict[str, deque[float]] = field(default_factory=dict)
    counters: ZohoCounters = field(default_factory=ZohoCounters)
    # Restricted picklists of the org (field → the values it allows): an update with another value is
    # refused with INVALID_DATA, as Zoho refuses one its admin removed. None set: every value goes.
    picklists: dict[str, list[str]] = field(default_factory=dict)
    # Time-based start: ids stay unique across restarts, as Zoho's do (workflow ids derive from them).
    next_sequence: int = field(default_factory=lambda: int(time.time() * 1000) % 10**12)

    def new_record_id(self) -> str:
        """The next 19-digit record id; leads and deals share the sequence, as Zoho ids are org-wide."""
        record_id = f"{ZOHO_ORG_PREFIX}{self.next_sequence:012d}"
        self.next_sequence += 1
        return record_id

    def create_lead(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a new generated lead.

        Args:
            overrides: Zoho fields to set on it, ``id`` included.

        Returns:
            The stored lead.
        """
        lead = generate_lead(self.rng, lead_id=self.new_record_id(), overrides=overrides)
        self.leads[lead["id"]] = lead
        self.updates.setdefault(lead["id"], [])
        return lead

    def create_deal(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a new generated deal; its stage history starts with the stage it was created in.

        Args:
            overrides: Zoho fields to set on it, ``id`` included.

        Returns:
            The stored deal.
        """
        deal = generate_deal(self.deal_rng, deal_id=self.new_record_id(), overrides=overrides)
        deal_id = str(deal["id"])
        deal["id"] = deal_id
        self.deals[deal_id] = deal
        self.deal_updates[deal_id] = []
        modified_by = deal.get("Modified_By")
        self.stage_history[deal_id] = [
            {
                "stage": deal.get("Stage"),
                "modified_time": deal.get("Modified_Time"),
                "modified_by": modified_by.get("name") if isinstance(modified_by, dict) else modified_by,
            }
        ]
        return deal


@dataclass
class DealerCounters:
    """What the project did to one dealer CRM."""

    requests: int = 0
    created: int = 0
    replays: int = 0
    marked_resent: int = 0  # ADF documents that said status="resend"
    lookups: int = 0
    rejected: int = 0
    faults_served: int = 0
    withdrawn: int = 0  # leads the hub withdrew (each lead once, however often asked)
    status_reads: int = 0
    callbacks_sent: int = 0  # status reports sent to the hub's dealer webhook


@dataclass
class DealerLead:
    """A lead as the dealer CRM stored it."""

    id: str
    channel: Literal["rest", "soap", "adf"]
    external_id: str | None
    fields: dict[str, Any]
    created_at: str
    status: str | None = None  # what the dealer did with it: accepted, contacted, ...
    status_at: str | None = None
    withdrawn: bool = False  # the hub took it back (the dealer missed its SLA)


@dataclass
class IdempotentResult:
    """The first answer given to an ``Idempotency-Key``, replayed to retries with the same body."""

    body: Any
    response: dict[str, Any]


@dataclass
class DealerState:
    """One dealer's CRM: stored leads (REST and SOAP alike), idempotency keys, counters."""

    leads: list[DealerLead] = field(default_factory=list)
    idempotency: dict[str, IdempotentResult] = field(default_factory=dict)
    creates_by_external_id: Counter[str] = field(default_factory=Counter)
    counters: DealerCounters = field(default_factory=DealerCounters)

    def add_lead(
        self, channel: Literal["rest", "soap", "adf"], external_id: str | None, fields: Any
    ) -> DealerLead:
        """Store a new lead; no deduplication here, that is the caller's business.

        Args:
            channel: The API it came through.
            external_id: The sender's id of the lead (the Zoho id), when known.
            fields: The lead as received.

        Returns:
            The stored lead with its dealer-side id.
        """
        lead = DealerLead(
            id=f"CRM-{len(self.leads) + 1:06d}",
            channel=channel,
            external_id=external_id,
            fields=fields,
            created_at=zoho_timestamp(datetime.now(BRT)),
        )
        self.leads.append(lead)
        self.counters.created += 1
        if external_id is not None:
            self.creates_by_external_id[external_id] += 1
        return lead

    def find(self, lead_id: str) -> DealerLead | None:
        """The lead with this dealer-side id, if any."""
        return next((lead for lead in self.leads if lead.id == lead_id), None)

    def withdraw(self, lead: DealerLead) -> None:
        """Drop a lead the hub took back; counted once per lead."""
        if not lead.withdrawn:
            lead.withdrawn = True
            self.counters.withdrawn += 1

    def find_by_external_id(self, external_id: str, *, active_only: bool = False) -> DealerLead | None:
        """The lead stored under an external id: the one the dealer still holds, else (unless
        ``active_only``: a search of live leads) one the hub withdrew."""
        stored = [lead for lead in self.leads if lead.external_id == external_id]
        active = next((lead for lead in stored if not lead.withdrawn), None)
        if active is not None or active_only:
            return active
        return stored[0] if stored else None


@dataclass
class FaultPlan:
    """Failures to inject for one target (``zoho``, ``vtex`` or a dealer id)."""

    latency_ms: int = 0
    error_5xx_remaining: int = 0
    rate_limit_remaining: int = 0
    retry_after_seconds: int = 1
    reject: bool = False
    answer_without_id_remaining: int = 0  # REST dealer: creates answered 201 with no ``id``
    conflict_remaining: int = 0  # REST dealer: creates answered 409 after storing the lead
    answer_lost_remaining: int = 0  # ADF inbox: the e-mail stored, its answer sent too late
    # REST dealer: creates (and their retries) answered 503 once the lead is stored, as a DMS whose
    # gateway fails after the write: the hub cannot know the dealer has the lead.
    stored_unanswered_remaining: int = 0
    # SOAP dealer: creates stored this long after they arrive (then answered), as a DMS slow under load: a
    # client that gave up sooner finds the lead only once it is stored.
    slow_store_ms: int = 0
    slow_store_remaining: int = 0


@dataclass
class EventCounters:
    """What one outbound-event subscriber received."""

    received: int = 0
    duplicates: int = 0
    invalid: int = 0
    unavailable: int = 0  # answered 503 by an injected fault
    rejected: int = 0  # refused for good (422) by an injected fault


@dataclass
class ReceivedEvent:
    """An outbound event that passed signature verification."""

    id: str
    type: str | None
    data: Any
    timestamp: str


@dataclass
class SubscriberState:
    """One outbound-event subscriber: the events it kept and the ids it has seen."""

    events: list[ReceivedEvent] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    counters: EventCounters = field(default_factory=EventCounters)


@dataclass
class VtexCounters:
    """What the project did to VTEX, and what VTEX sent it; API requests count whatever their answer."""

    oms_gets: int = 0
    oms_lists: int = 0
    feed_reads: int = 0
    feed_commits: int = 0
    hook_config_saves: int = 0
    pings_sent: int = 0
    hooks_sent: int = 0
    faults_served: int = 0
    catalog_sku_lists: int = 0
    catalog_sku_gets: int = 0
    pricing_gets: int = 0
    md_scrolls_opened: int = 0
    md_scroll_pages: int = 0
    md_scrolls_superseded: int = 0


@dataclass
class FeedItem:
    """One Feed v3 item: an order's state change, waiting to be read and committed."""

    event_id: str
    handle: str
    domain: str
    state: str
    last_state: str
    order_id: str
    last_change: str
    current_change: str
    committed: bool = False
    invisible_until: float = float("-inf")
    reads: int = 0

    def visible(self, now: float) -> bool:
        """Whether a feed read at ``now`` (monotonic seconds) may return the item."""
        return not self.committed and now >= self.invisible_until

    def as_feed(self) -> dict[str, str]:
        """The item as ``GET /api/orders/feed`` lists it."""
        return {
            "eventId": self.event_id,
            "handle": self.handle,
            "domain": self.domain,
            "state": self.state,
            "lastState": self.last_state,
            "orderId": self.order_id,
            "lastChange": self.last_change,
            "currentChange": self.current_change,
        }


@dataclass
class MdScroll:
    """An open Master Data scroll: the ids that matched when it opened, in order, and how far it got."""

    token: str
    ids: list[str]
    fields: tuple[str, ...] | None  # None: every field
    size: int
    last_used: float
    served: int = 0


@dataclass
class MasterDataState:
    """Master Data v1, entity CL: customers changed or created since the last reset, and the open scroll.

    The generated customers stay as the configuration makes them; ``documents`` holds the current content
    of those updated since, and of those created.
    """

    # Picks the customers to update and makes new ones and scroll tokens: a seeded app repeats them.
    rng: random.Random = field(default_factory=random.Random)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    # Master Data keeps one scroll at a time: opening another closes it.
    scroll: MdScroll | None = None
    # The latest createdIn/updatedIn handed out (ticks): the next one is strictly later.
    last_ticks: int = 0


VTEX_SEEDED_FIRST_SEQUENCE = 1480570412001


@dataclass
class VtexState:
    """VTEX: OMS orders (live, history), their hooks, Feed v3, hook config, catalog and customer changes."""

    rng: random.Random
    # Read-only and the same after a reset: built once per app, its index on first use.
    history: OrderHistory
    # What live orders take their items and buyers from: the catalog and customers as they are now.
    store: Store | None = None
    # Feed handles draw from their own generator: reading the feed does not change the orders a seed gives.
    feed_rng: random.Random = field(default_factory=random.Random)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    request_times: dict[str, list[float]] = field(default_factory=dict)
    feed: list[FeedItem] = field(default_factory=list)
    feed_by_handle: dict[str, FeedItem] = field(default_factory=dict)
    hook_config: dict[str, Any] | None = None
    hook_saved_at: str | None = None
    catalog_changes: CatalogChanges = field(default_factory=CatalogChanges)
    master_data: MasterDataState = field(default_factory=MasterDataState)
    counters: VtexCounters = field(default_factory=VtexCounters)
    # Time-based start, as for Zoho ids: order ids stay unique across restarts.
    next_sequence: int = field(default_factory=lambda: time.time_ns() // 10**6 % 10**13)

    def create_order(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a new generated order in status ``order-created``, its items and buyer from :attr:`store`.

        Args:
            overrides: Fields to merge into the generated document, ``orderId`` included.

        Returns:
            The stored order.
        """
        sequence = self.next_sequence
        self.next_sequence += 1
        order = generate_order(
            self.rng,
            order_id=f"{sequence:013d}-01",
            sequence=f"{sequence % 10**7:07d}",
            overrides=overrides,
            store=self.store,
        )
        order_id = str(order["orderId"])
        order["orderId"] = order_id
        self.orders[order_id] = order
        self.hooks[order_id] = []
        return order

    def add_feed_item(self, hook: dict[str, Any]) -> FeedItem:
        """Append an order's state change to the feed, built from the hook payload of the same change."""
        item = FeedItem(
            event_id=f"{self.feed_rng.getrandbits(128):032X}",
            # Opaque like VTEX's (an SQS receipt handle): only good for committing.
            handle=f"{self.feed_rng.getrandbits(256):064x}",
            domain=str(hook["Domain"]),
            state=str(hook["State"]),
            last_state=str(hook["LastState"]),
            order_id=str(hook["OrderId"]),
            last_change=str(hook["LastChange"]),
            current_change=str(hook["CurrentChange"]),
        )
        self.feed.append(item)
        self.feed_by_handle[item.handle] = item
        return item


class SimulatorState:
    """All state of one simulator app.

    Args:
        config: The app's configuration.
        clock: Monotonic seconds; tests pass a fake one to skip time (token expiry, rate windows).
    """

    def __init__(self, config: SimulatorConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.event_verifier = Webhook(config.event_signing_secret)
        # Opened by the app's lifespan, used to send Zoho webhooks.
        self.http: httpx.AsyncClient | None = None
        self.vtex_history = OrderHistory.from_config(config)
        self.reset()

    def client(self) -> httpx.AsyncClient:
        """The HTTP client the simulators send webhooks and hooks with (opened by the app's lifespan)."""
        if self.http is None:
            raise RuntimeError("the simulator app's lifespan did not run: no HTTP client")
        return self.http

    def reset(self) -> None:
        """Forget every lead, deal, order, token, fault, event, hook config and counter.

        VTEX catalog changes, customer changes and the Master Data scroll go too. The generated VTEX order
        history, catalog and customers stay: they depend on the configuration alone.
        """
        seed = self.config.seed
        deal_seed = None if seed is None else f"deals-{seed}"
        self.zoho = ZohoState(rng=random.Random(seed), deal_rng=random.Random(deal_seed))
        if self.config.seed is not None:
            self.zoho.next_sequence = SEEDED_FIRST_SEQUENCE  # a seeded run repeats its ids too
        catalog_changes = CatalogChanges(rng=random.Random(None if seed is None else f"vtex-catalog-{seed}"))
        master_data = MasterDataState(rng=random.Random(None if seed is None else f"vtex-md-{seed}"))
        self.vtex = VtexState(
            rng=random.Random(None if seed is None else f"vtex-{seed}"),
            history=self.vtex_history,
            store=GeneratedStore(self.config, catalog_changes, master_data.documents),
            feed_rng=random.Random(None if seed is None else f"vtex-feed-{seed}"),
            catalog_changes=catalog_changes,
            master_data=master_data,
        )
        if seed is not None:
            self.vtex.next_sequence = VTEX_SEEDED_FIRST_SEQUENCE
        self.dealers: dict[str, DealerState] = {}
        self.faults: dict[str, FaultPlan] = {}
        self.subscribers: dict[str, SubscriberState] = {}
        # Partners whose credentials are revoked ("zoho", "vtex"): every call answers as a revoked app's.
        self.revoked: set[str] = set()

    def dealer(self, dealer_id: str) -> DealerState:
        """The state of a dealer, created on first use."""
        return self.dealers.setdefault(dealer_id, DealerState())

    def subscriber(self, name: str) -> SubscriberState:
        """The state of an event subscriber, created on first use."""
        return self.subscribers.setdefault(name, SubscriberState())


def get_state(request: Request) -> SimulatorState:
    """FastAPI dependency: the state of the app serving the request."""
    return app_state(request.app)


def app_state(app: FastAPI) -> SimulatorState:
    """The state of a simulator app, for tests and embedding code.

    Args:
        app: An app made by :func:`simulators.app.create_app`.

    Returns:
        Its state.
    """
    state = app.state.simulator
    assert isinstance(state, SimulatorState)
    return state


StateDep = Annotated[SimulatorState, Depends(get_state)]
