"""A deterministic order history for the VTEX simulator: years of orders served through the OMS list API.

Only a sorted index of creation times is kept; each full document is generated on demand from
``(seed, position)``, so ten thousand orders cost a list of integers, not ten thousand documents. The
same settings (the catalog's and customers' included) give the same ids, dates and documents on every
run and every machine: every random generator is seeded with a string (hashed with SHA-512 by
:mod:`random`), never with ``hash()``.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import itertools
import random
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.config import SimulatorConfig
from simulators.leads import BRT
from simulators.vtex_orders import (
    EPOCH,
    STATUS_DESCRIPTIONS,
    TICKS_PER_SECOND,
    generate_order,
    parse_ticks,
    ticks_of,
    vtex_timestamp,
)
from simulators.vtex_store import GeneratedStore

TICKS_PER_MILLISECOND = TICKS_PER_SECOND // 1000
TICKS_PER_HOUR = 3600 * TICKS_PER_SECOND
TICKS_PER_DAY = 24 * TICKS_PER_HOUR
# Live orders end in "-01" (the first order of its group); history orders end in "-02", so the two can
# never share an id whatever the clock did when a live order was created.
HISTORY_ID_SUFFIX = "-02"
CANCELED_SHARE = 0.08
DOCUMENT_CACHE_SIZE = 512
# Relative order volume by hour of the day in Brasília: quiet nights, a lunch bump, an evening peak.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 10, 10, 9, 9, 9, 10, 11, 12, 12, 11, 8, 4)
# The shop grows over the years: the last day of the history sells this many times the first.
GROWTH = 1.6
# Black Friday to Cyber Monday sells several times an ordinary day.
BLACK_FRIDAY_BOOST = 4.0
# Payment system, its group, and its share of orders (Pix leads in Brazil).
PAYMENT_SYSTEMS = (
    ("Pix", "instantPayment", 40),
    ("Visa", "creditCard", 25),
    ("Mastercard", "creditCard", 20),
    ("Boleto Bancário", "bankInvoice", 10),
    ("Elo", "creditCard", 5),
)

_FILTER = re.compile(r"^creationDate:\[(?P<first>[^\s\]]+) TO (?P<last>[^\s\]]+)\]$")


@dataclass(frozen=True)
class CreationWindow:
    """Inclusive bounds on ``creationDate``, compared at millisecond precision like VTEX's search.

    An order created at ``23:59:59.9995`` lies in a window that ends at ``23:59:59.999``: windows that
    meet at consecutive milliseconds cover every order exactly once.
    """

    first_ms: int | None = None
    last_ms: int | None = None

    def contains(self, ticks: int) -> bool:
        """Whether a creation time (ticks) lies in the window."""
        ms = ticks // TICKS_PER_MILLISECOND
        return (self.first_ms is None or ms >= self.first_ms) and (self.last_ms is None or ms <= self.last_ms)


def window_of(first: str | None, last: str | None) -> CreationWindow:
    """A window from two ISO 8601 timestamps with a zone (``2024-01-01T00:00:00.000Z``), either open.

    Raises:
        ValueError: When a bound is not such a timestamp, or the first is after the last.
    """
    bounds: list[int | None] = []
    for name, value in (("from", first), ("to", last)):
        ticks = None if value is None else parse_ticks(value)
        if value is not None and ticks is None:
            raise ValueError(
                f"{name} {value!r} is not an ISO 8601 timestamp with a zone, such as 2024-01-01T00:00:00.000Z"
            )
        bounds.append(None if ticks is None else ticks // TICKS_PER_MILLISECOND)
    first_ms, last_ms = bounds
    if first_ms is not None and last_ms is not None and first_ms > last_ms:
        raise ValueError(f"the window starts ({first}) after it ends ({last})")
    return CreationWindow(first_ms, last_ms)


def parse_creation_filter(value: str) -> CreationWindow:
    """The window of an ``f_creationDate`` parameter: ``creationDate:[<from> TO <to>]``, both inclusive.

    Raises:
        ValueError: With a message fit for the caller when the filter is malformed.
    """
    match = _FILTER.match(value.strip())
    if match is None:
        raise ValueError(
            "f_creationDate must read creationDate:[<from> TO <to>], e.g. "
            "creationDate:[2024-01-01T00:00:00.000Z TO 2024-01-31T23:59:59.999Z]"
        )
    return window_of(match["first"], match["last"])


class OrderHistory:
    """``orders`` orders created over the ``days`` before ``end``, all in a final state.

    Creation times follow a shop's rhythm (evenings busier than nights, growth over the years, Black
    Friday peaks); about 8 % of the orders ended ``canceled``, the rest ``invoiced``. Positions in the
    index follow creation time, so ids and store sequence numbers grow with it, as a real store's do.
    With a store, every order's items and buyer come from its catalog and customers as they were
    generated (the control API's changes are later news), among those created before the order.

    Args:
        orders: How many orders the history holds.
        days: How long it spans.
        end: When it ends (aware); every order was created before.
        seed: What the history is made from.
        store: The generated catalog and customers; without one, fixed products and made-up buyers.
    """

    def __init__(
        self, *, orders: int, days: int, end: datetime, seed: int, store: GeneratedStore | None = None
    ) -> None:
        if end.tzinfo is None:
            raise ValueError("the end of the history must be an aware datetime")
        self.size = orders
        self.days = days
        self.end = end.astimezone(UTC)
        self.seed = seed
        self.store = store
        self._ticks: list[int] | None = None
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        # The id's 13-digit group starts at a seed-derived number: other seeds give other ids.
        self._id_base = random.Random(f"vtex-history:{seed}:ids").randrange(10**12, 9 * 10**12)

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> OrderHistory:
        """The history the ``SIM_VTEX_HISTORY_*`` settings describe, over the generated catalog and customers.

        Its index is built on first use, each document when it is asked for.
        """
        return cls(
            orders=config.vtex_history_orders,
            days=config.vtex_history_days,
            end=datetime.fromisoformat(config.vtex_history_end),
            seed=config.vtex_history_seed,
            store=GeneratedStore(config),
        )

    def __len__(self) -> int:
        return self.size

    @property
    def creation_ticks(self) -> list[int]:
        """Every order's creation time in ticks, ascending (the index, built on first use)."""
        if self._ticks is None:
            self._ticks = self._build_index()
        return self._ticks

    def order_id(self, position: int) -> str:
        """The id of the order at a position of the index."""
        return f"{self._id_base + position:013d}{HISTORY_ID_SUFFIX}"

    def position_of(self, order_id: str) -> int | None:
        """The position of a history order in the index, or None if the id is not one of its."""
        group = order_id.removesuffix(HISTORY_ID_SUFFIX)
        if group == order_id or len(group) != 13 or not group.isdigit():
            return None
        position = int(group) - self._id_base
        return position if 0 <= position < self.size else None

    def creation_date(self, position: int) -> str:
        """The ``creationDate`` of the order at a position, as the OMS writes it."""
        return vtex_timestamp(self.creation_ticks[position])

    def positions(self, window: CreationWindow) -> range:
        """The positions of the orders created within a window, ascending."""
        ticks = self.creation_ticks
        low = (
            0
            if window.first_ms is None
            else bisect.bisect_left(ticks, window.first_ms * TICKS_PER_MILLISECOND)
        )
        high = (
            len(ticks)
            if window.last_ms is None
            else bisect.bisect_left(ticks, (window.last_ms + 1) * TICKS_PER_MILLISECOND)
        )
        return range(low, max(low, high))

    def document(self, order_id: str) -> dict[str, Any] | None:
        """The full OMS document of a history order (a copy, free to change), or None if it is not one."""
        position = self.position_of(order_id)
        return None if position is None else copy.deepcopy(self.cached_document(position))

    def cached_document(self, position: int) -> dict[str, Any]:
        """The document at a position, from a small LRU cache; callers must not change it."""
        document = self._cache.get(position)
        if document is None:
            document = self._generate(position)
            self._cache[position] = document
            if len(self._cache) > DOCUMENT_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(position)
        return document

    def _build_index(self) -> list[int]:
        start = ticks_of(self.end) - self.days * TICKS_PER_DAY
        hours = self.days * 24
        weights = [_density(start + hour * TICKS_PER_HOUR, hour / hours) for hour in range(hours)]
        rng = random.Random(f"vtex-history:{self.seed}:times")
        # Pick an hour by its weight, then a moment within it: the shop's rhythm without rejection sampling.
        chosen = rng.choices(range(hours), cum_weights=list(itertools.accumulate(weights)), k=self.size)
        return sorted(start + hour * TICKS_PER_HOUR + rng.randrange(TICKS_PER_HOUR) for hour in chosen)

    def _generate(self, position: int) -> dict[str, Any]:
        rng = random.Random(f"vtex-history:{self.seed}:{position}")
        created = self.creation_ticks[position]
        # Draws happen in a fixed order: status, when it was reached, payment, then the order itself.
        if rng.random() < CANCELED_SHARE:
            status, delay = "canceled", rng.randint(TICKS_PER_HOUR // 3, 3 * TICKS_PER_DAY)
        else:
            status, delay = "invoiced", rng.randint(TICKS_PER_DAY // 2, 8 * TICKS_PER_DAY)
        payment, group, _ = rng.choices(PAYMENT_SYSTEMS, weights=[weight for *_, weight in PAYMENT_SYSTEMS])[
            0
        ]
        overrides = {
            "status": status,
            "statusDescription": STATUS_DESCRIPTIONS[status],
            "creationDate": vtex_timestamp(created),
            "lastChange": vtex_timestamp(created + delay),
        }
        order_id = self.order_id(position)
        order = generate_order(
            rng,
            order_id=order_id,
            sequence=f"{(self._id_base + position) % 10**7:07d}",
            now=EPOCH + timedelta(microseconds=created // 10),
            overrides=overrides,
            store=None if self.store is None else self.store.at(created),
        )
        order["paymentData"] = {
            "transactions": [
                {
                    "isActive": status == "invoiced",
                    "payments": [{"paymentSystemName": payment, "group": group, "value": order["value"]}],
                }
            ]
        }
        return order


def _density(ticks: int, progress: float) -> float:
    # Relative order volume in the hour starting at ``ticks``, ``progress`` (0 to 1) through the history.
    moment = (EPOCH + timedelta(microseconds=ticks // 10)).astimezone(BRT)
    weight = HOUR_WEIGHTS[moment.hour] * (1 + (GROWTH - 1) * progress)
    return weight * BLACK_FRIDAY_BOOST if _black_friday_weekend(moment) else weight


def _black_friday_weekend(moment: datetime) -> bool:
    # Black Friday is the day after the fourth Thursday of November; the rush runs to Cyber Monday.
    if moment.month != 11:
        return False
    first_thursday = 1 + (3 - datetime(moment.year, 11, 1).weekday()) % 7
    black_friday = first_thursday + 22
    return black_friday <= moment.day <= black_friday + 3


def select_orders(
    history: OrderHistory,
    live: Mapping[str, dict[str, Any]],
    window: CreationWindow,
    *,
    descending: bool,
    offset: int,
    limit: int,
) -> tuple[int, list[dict[str, Any]]]:
    """The orders created within a window, history and live together, as the OMS list pages them.

    Live orders win over a history order with the same id; a live order whose ``creationDate`` an
    override made unreadable matches no window. Ties on creation time are broken by order id, so pages
    never overlap.

    Args:
        history: The generated history.
        live: The orders created through the control API, by id.
        window: The ``creationDate`` bounds.
        descending: Newest first (else oldest first).
        offset: How many matching orders to skip.
        limit: How many to return at most.

    Returns:
        How many orders match in all, and the documents of the requested slice (not to be changed).
    """
    positions = history.positions(window)
    shadowed = {position for order_id in live if (position := history.position_of(order_id)) in positions}
    matching_live = sorted(
        (created, order_id)
        for order_id, order in live.items()
        if (created := parse_ticks(order.get("creationDate"))) is not None and window.contains(created)
    )
    total = len(positions) - len(shadowed) + len(matching_live)
    creation = history.creation_ticks
    # Entries are (creation ticks, order id, history position or -1 for a live order).
    from_history: Iterator[tuple[int, str, int]] = (
        (creation[position], history.order_id(position), position)
        for position in (reversed(positions) if descending else positions)
        if position not in shadowed
    )
    from_live: Iterator[tuple[int, str, int]] = (
        (created, order_id, -1)
        for created, order_id in (reversed(matching_live) if descending else matching_live)
    )
    page = itertools.islice(
        heapq.merge(from_history, from_live, key=lambda entry: entry[:2], reverse=descending),
        offset,
        offset + limit,
    )
    return total, [
        history.cached_document(position) if position >= 0 else live[order_id]
        for _, order_id, position in page
    ]
