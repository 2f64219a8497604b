"""Master Data v1, entity CL (customers): generated documents, the scroll API and its ``_where`` filter.

The generated customers (``vtex_customers`` of them, created over the two years before
``vtex_history_end``, :func:`simulators.vtex_store.customer_base`) are built on first use and never
change; orders take their buyers from them too. Updates and new customers made through the
control API live in the app state (:class:`simulators.state.MasterDataState`), which a reset clears. A
scroll snapshots the ids matching its ``_where`` when it opens, in creation order, and serves each page
with the documents' content at the time the page is served, as Master Data does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from simulators.config import SimulatorConfig
from simulators.state import EarlyReply, MasterDataState, MdScroll, SimulatorState, StateDep
from simulators.vtex import vtex_api_guard
from simulators.vtex_orders import now_ticks, parse_ticks
from simulators.vtex_store import (
    FIELDS,
    customer_document,
    email_kind,
    generated_customers,
    md_timestamp,
    phone_number,
)

TOKEN_HEADER = "X-VTEX-MD-TOKEN"
SCROLL_MAX_SIZE = 1000
SCROLL_DEFAULT_SIZE = 100
EXPIRED_TOKEN = "The scroll token is invalid or has expired"
DATE_FIELDS = frozenset({"createdIn", "updatedIn"})
BOOLEAN_FIELDS = frozenset({"isNewsletterOptIn"})

Predicate = Callable[[Mapping[str, Any]], bool]


class NotEnoughCustomers(ValueError):
    """An update asked for more customers than there are."""


class Customers:
    """The generated customers of a configuration with the control API's updates and creations on top.

    Args:
        config: The app's configuration (how many customers, their seed, the history end, the account).
        live: What changed since the last reset; :meth:`update` and :meth:`create` add to it.
    """

    def __init__(self, config: SimulatorConfig, live: MasterDataState) -> None:
        self.base = generated_customers(config)
        self.live = live
        self.account = config.vtex_account

    def ids(self) -> list[str]:
        """Every customer id in creation order: the generated ones, then those created since."""
        return [document["id"] for document in self.base.documents] + self.live.created

    def document(self, customer_id: str) -> dict[str, Any]:
        """A customer's current content (not to be changed); KeyError for an unknown id."""
        changed = self.live.documents.get(customer_id)
        return changed if changed is not None else self.base.documents[self.base.positions[customer_id]]

    def documents(self) -> Iterator[dict[str, Any]]:
        """Every customer's current content (not to be changed), in creation order."""
        changed = self.live.documents
        yield from (changed.get(document["id"], document) for document in self.base.documents)
        yield from (changed[customer_id] for customer_id in self.live.created)

    def update(self, count: int) -> list[str]:
        """Update ``count`` distinct customers now: a new ``updatedIn`` and a new ``phone`` each.

        Returns:
            Their ids, in the order their ``updatedIn`` grows.

        Raises:
            NotEnoughCustomers: When there are fewer customers than that.
        """
        ids = self.ids()
        if count > len(ids):
            raise NotEnoughCustomers(f"asked to update {count} customers, but there are {len(ids)}")
        picked = self.live.rng.sample(ids, count)
        for customer_id in picked:
            document = dict(self.document(customer_id))
            document["updatedIn"] = md_timestamp(self._stamp())
            document["phone"] = _other_phone(self.live.rng, document["phone"])
            self.live.documents[customer_id] = document
        return picked

    def create(self, count: int) -> list[str]:
        """Create ``count`` customers now, never updated (``updatedIn`` null); returns their ids in order."""
        ids = []
        for _ in range(count):
            document = customer_document(
                self.live.rng, account=self.account, created=self._stamp(), updated=None
            )
            self.live.documents[document["id"]] = document
            self.live.created.append(document["id"])
            ids.append(document["id"])
        return ids

    def _stamp(self) -> int:
        # Now, but strictly later than any time handed out before: two changes in a row stay ordered.
        ticks = max(now_ticks(), self.live.last_ticks + 1, self.base.latest_ticks + 1)
        self.live.last_ticks = ticks
        return ticks


def live_scroll(state: SimulatorState) -> MdScroll | None:
    """The open scroll, unless it was left unused for ``vtex_md_scroll_idle_seconds`` (then it is closed)."""
    master_data = state.vtex.master_data
    scroll = master_data.scroll
    if scroll is not None and state.clock() - scroll.last_used >= state.config.vtex_md_scroll_idle_seconds:
        master_data.scroll = None
    return master_data.scroll


def open_scroll(state: SimulatorState, ids: list[str], fields: tuple[str, ...] | None, size: int) -> MdScroll:
    """Open a scroll over ``ids``, closing the open one: Master Data keeps one scroll at a time.

    The closed one counts as superseded when it still had documents to serve: its reader lost them.
    """
    vtex = state.vtex
    previous = live_scroll(state)
    if previous is not None and previous.served < len(previous.ids):
        vtex.counters.md_scrolls_superseded += 1
    token = f"{vtex.master_data.rng.getrandbits(256):064x}"
    scroll = MdScroll(token=token, ids=ids, fields=fields, size=size, last_used=state.clock())
    vtex.master_data.scroll = scroll
    vtex.counters.md_scrolls_opened += 1
    return scroll


def take_page(
    state: SimulatorState, customers: Customers, scroll: MdScroll, size: int
) -> list[dict[str, Any]]:
    """The next ``size`` documents of a scroll, as they are now; ``[]`` once exhausted."""
    ids = scroll.ids[scroll.served : scroll.served + size]
    scroll.served += len(ids)
    scroll.last_used = state.clock()
    return [_project(customers.document(customer_id), scroll.fields) for customer_id in ids]


class WhereError(ValueError):
    """A ``_where`` filter that does not parse; the message says why."""


@dataclass(frozen=True)
class _Token:
    kind: Literal["symbol", "string", "word"]
    text: str


_WHERE_TOKEN = re.compile(
    r"""\s*(?:(?P<symbol>[()=<>])|"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<word>[^\s()=<>"']+))"""
)


def parse_where(text: str) -> Predicate:
    """A predicate over CL documents from a Master Data v1 ``_where`` filter.

    Grammar: comparisons ``field=value``, ``field>date``, ``field<date``, ``field between date AND date``
    (inclusive) and ``field is null``, combined with ``AND`` and ``OR`` (any case; ``AND`` binds tighter)
    and parentheses. Dates are ISO 8601 with a zone, fractional digits allowed, compared as instants;
    a null field matches only ``is null``. ``=`` values may be quoted (``"..."`` or ``'...'``) or bare.

    Raises:
        WhereError: When the filter does not follow the grammar or names a field CL does not have.
    """
    return _WhereParser(_tokenize(text)).parse()


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    text = text.rstrip()
    position = 0
    while position < len(text):
        match = _WHERE_TOKEN.match(text, position)
        if match is None:
            raise WhereError(f"unterminated quote in {text[position:].strip()!r}")
        if match["symbol"] is not None:
            tokens.append(_Token("symbol", match["symbol"]))
        elif match["word"] is not None:
            tokens.append(_Token("word", match["word"]))
        else:
            quoted = match["double"] if match["double"] is not None else match["single"]
            tokens.append(_Token("string", quoted))
        position = match.end()
    return tokens


class _WhereParser:
    """A recursive-descent parser over the tokens of a ``_where`` filter.

    disjunction := conjunction (OR conjunction)*; conjunction := operand (AND operand)*;
    operand := "(" disjunction ")" | comparison.
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.position = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            raise WhereError("the filter is empty")
        predicate = self._disjunction()
        if self.position < len(self.tokens):
            raise WhereError(f"unexpected {self.tokens[self.position].text!r} after a complete condition")
        return predicate

    def _disjunction(self) -> Predicate:
        operands = [self._conjunction()]
        while self._take_word("or"):
            operands.append(self._conjunction())
        return operands[0] if len(operands) == 1 else _any_of(operands)

    def _conjunction(self) -> Predicate:
        operands = [self._operand()]
        while self._take_word("and"):
            operands.append(self._operand())
        return operands[0] if len(operands) == 1 else _all_of(operands)

    def _operand(self) -> Predicate:
        if not self._take_symbol("("):
            return self._comparison()
        inner = self._disjunction()
        if not self._take_symbol(")"):
            raise WhereError(f"expected ')' {self._where()}")
        return inner

    def _comparison(self) -> Predicate:
        field = self._field()
        if self._take_symbol("="):
            return _equals(field, self._value(f"after '{field}='"))
        if self._take_symbol(">"):
            after = self._instant(field, ">")
            return _on_date(field, lambda ticks: ticks > after)
        if self._take_symbol("<"):
            before = self._instant(field, "<")
            return _on_date(field, lambda ticks: ticks < before)
        if self._take_word("between"):
            low = self._instant(field, "between")
            if not self._take_word("and"):
                raise WhereError(f"expected AND between the two dates of '{field} between' {self._where()}")
            high = self._instant(field, "between")
            return _on_date(field, lambda ticks: low <= ticks <= high)
        if self._take_word("is"):
            if not self._take_word("null"):
                raise WhereError(f"expected null after '{field} is' {self._where()}")
            return lambda document: document.get(field) is None
        raise WhereError(f"expected =, >, <, between or is null after '{field}' {self._where()}")

    def _field(self) -> str:
        token = self._next(f"expected a field name {self._where()}")
        if token.kind != "word" or token.text not in FIELDS:
            raise WhereError(f"unknown field {token.text!r}: CL documents have {', '.join(FIELDS)}")
        return token.text

    def _value(self, context: str) -> str:
        token = self._next(f"expected a value {context}")
        if token.kind == "symbol":
            raise WhereError(f"expected a value {context}, not {token.text!r}")
        return token.text

    def _instant(self, field: str, operator: str) -> int:
        if field not in DATE_FIELDS:
            dates = ", ".join(sorted(DATE_FIELDS))
            raise WhereError(f"{operator} compares dates, and {field} is not one ({dates})")
        return _ticks(self._value(f"after '{field} {operator}'"))

    def _next(self, missing: str) -> _Token:
        if self.position >= len(self.tokens):
            raise WhereError(missing)
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _take_word(self, keyword: str) -> bool:
        # Keywords are bare words in any case; a quoted "and" is a value.
        token = self.tokens[self.position] if self.position < len(self.tokens) else None
        if token is None or token.kind != "word" or token.text.lower() != keyword:
            return False
        self.position += 1
        return True

    def _take_symbol(self, symbol: str) -> bool:
        token = self.tokens[self.position] if self.position < len(self.tokens) else None
        if token is None or token.kind != "symbol" or token.text != symbol:
            return False
        self.position += 1
        return True

    def _where(self) -> str:
        if self.position >= len(self.tokens):
            return "at the end of the filter"
        return f"at {self.tokens[self.position].text!r}"


def _ticks(value: str) -> int:
    ticks = parse_ticks(value)
    if ticks is None:
        raise WhereError(f"{value!r} is not an ISO 8601 timestamp with a zone, such as 2024-01-01T00:00:00Z")
    return ticks


def _on_date(field: str, test: Callable[[int], bool]) -> Predicate:
    # A null (or unreadable) date never matches a comparison.
    def predicate(document: Mapping[str, Any]) -> bool:
        ticks = parse_ticks(document.get(field))
        return ticks is not None and test(ticks)

    return predicate


def _equals(field: str, value: str) -> Predicate:
    if field in DATE_FIELDS:
        instant = _ticks(value)
        return _on_date(field, lambda ticks: ticks == instant)
    if field in BOOLEAN_FIELDS:
        if value.lower() not in ("true", "false"):
            raise WhereError(f"{field} is true or false, not {value!r}")
        expected = value.lower() == "true"
        return lambda document: document.get(field) is expected
    return lambda document: document.get(field) == value


def _any_of(operands: list[Predicate]) -> Predicate:
    return lambda document: any(operand(document) for operand in operands)


def _all_of(operands: list[Predicate]) -> Predicate:
    return lambda document: all(operand(document) for operand in operands)


router = APIRouter(prefix="/vtex/api/dataentities/CL", tags=["vtex"])
control_router = APIRouter(prefix="/_control/vtex/customers", tags=["control"])


@router.get("/scroll")
async def scroll_customers(
    request: Request,
    state: StateDep,
    size: Annotated[str | None, Query(alias="_size")] = None,
    fields: Annotated[str | None, Query(alias="_fields")] = None,
    where: Annotated[str | None, Query(alias="_where")] = None,
    token: Annotated[str | None, Query(alias="_token")] = None,
) -> JSONResponse:
    """Without ``_token``: open a scroll over the documents matching ``_where`` and serve its first page.

    With ``_token``: the scroll's next page (``_where`` and ``_fields`` are the opening call's; ``_size``,
    1 to 1000, defaults to the opening call's, itself 100 by default). Every answer carries the token in
    ``X-VTEX-MD-TOKEN``. An exhausted scroll answers ``[]`` to a token call and is then closed; an empty
    first page leaves it open, for readers that always follow the token once. A token that is unknown,
    superseded by a newer scroll or idle for ``vtex_md_scroll_idle_seconds`` is a 400. ``_fields`` is a
    comma list, ``_all`` or absent for every field; names CL does not have are left out.
    """
    state.vtex.counters.md_scroll_pages += 1
    await vtex_api_guard(request, state)
    page_size = _page_size(size)
    customers = Customers(state.config, state.vtex.master_data)
    if token is None:
        scroll = open_scroll(state, _matching_ids(customers, where), _fields(fields), page_size)
    else:
        scroll = _scroll_of(state, token)
        page_size = scroll.size if size is None else page_size
    page = take_page(state, customers, scroll, page_size)
    if token is not None and not page:
        state.vtex.master_data.scroll = None  # the reader has seen the end: the token is done
    return JSONResponse(page, headers={TOKEN_HEADER: scroll.token})


class CustomerCount(BaseModel):
    """How many customers to update or create."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=0, le=100_000)


@control_router.post("/update")
async def update_customers(body: CustomerCount, state: StateDep) -> JSONResponse:
    """Update ``count`` distinct customers now (``updatedIn``, ``phone``): ``{"ids": [...]}``.

    Each ``updatedIn`` is strictly later than any time handed out before; 409 when there are fewer
    customers than asked for.
    """
    try:
        ids = Customers(state.config, state.vtex.master_data).update(body.count)
    except NotEnoughCustomers as exc:
        return JSONResponse({"error": "not_enough_customers", "message": str(exc)}, status_code=409)
    return JSONResponse({"ids": ids})


@control_router.post("/create")
async def create_customers(body: CustomerCount, state: StateDep) -> dict[str, list[str]]:
    """Create ``count`` customers now, ``updatedIn`` null: ``{"ids": [...]}`` in creation order."""
    return {"ids": Customers(state.config, state.vtex.master_data).create(body.count)}


@control_router.post("/expire-scrolls")
async def expire_scrolls(state: StateDep) -> dict[str, int]:
    """Close the open scroll, as if it had idled too long: ``{"expired": 0 or 1}``."""
    expired = live_scroll(state) is not None
    state.vtex.master_data.scroll = None
    return {"expired": int(expired)}


@control_router.get("")
async def show_customers(state: StateDep) -> dict[str, int]:
    """``{"documents", "never_updated", "masked_emails", "invalid_emails", "open_scrolls"}``."""
    documents = list(Customers(state.config, state.vtex.master_data).documents())
    kinds = [email_kind(document.get("email")) for document in documents]
    return {
        "documents": len(documents),
        "never_updated": sum(1 for document in documents if document.get("updatedIn") is None),
        "masked_emails": kinds.count("masked"),
        "invalid_emails": kinds.count("invalid"),
        "open_scrolls": int(live_scroll(state) is not None),
    }


def md_error(status_code: int, message: str) -> JSONResponse:
    """An error in Master Data's shape: ``{"Message": "..."}``."""
    return JSONResponse({"Message": message}, status_code=status_code)


def _page_size(value: str | None) -> int:
    if value is None:
        return SCROLL_DEFAULT_SIZE
    number = int(value) if value.isascii() and value.isdigit() else 0
    if not 1 <= number <= SCROLL_MAX_SIZE:
        raise EarlyReply(md_error(400, f"_size must be an integer from 1 to {SCROLL_MAX_SIZE}"))
    return number


def _fields(value: str | None) -> tuple[str, ...] | None:
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    return None if not names or "_all" in names else names


def _matching_ids(customers: Customers, where: str | None) -> list[str]:
    if where is None or not where.strip():
        return customers.ids()
    try:
        predicate = parse_where(where)
    except WhereError as exc:
        raise EarlyReply(md_error(400, f"Invalid _where: {exc}")) from None
    return [document["id"] for document in customers.documents() if predicate(document)]


def _scroll_of(state: SimulatorState, token: str) -> MdScroll:
    scroll = live_scroll(state)
    if scroll is None or scroll.token != token:
        raise EarlyReply(md_error(400, EXPIRED_TOKEN))
    return scroll


def _project(document: Mapping[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    if fields is None:
        return dict(document)
    return {name: document[name] for name in fields if name in document}


def _other_phone(rng: random.Random, phone: Any) -> str:
    new = phone_number(rng)
    while new == phone:
        new = phone_number(rng)
    return new
