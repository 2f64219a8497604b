"""Dealers and routing rules from a YAML file into the portal database."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.business_hours import HORIZON_DAYS, from_config, holiday_calendar
from core.dealers import ADF_INTERESTS, ADF_TARGETS, DEALER_ID_PATTERN, UNLINKED_DEALER, adf_missing
from core.timeutil import utcnow
from db.models import Dealer

DealerId = Annotated[str, StringConstraints(pattern=DEALER_ID_PATTERN)]


class CrmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["rest", "soap", "adf"]
    url: str = Field(
        min_length=1,
        description="REST base URL, the SOAP service's WSDL URL, or for ADF the URL the XML is POSTed to"
        " or mailto:<the dealer's lead inbox>",
    )

    @model_validator(mode="after")
    def _url_fits_kind(self) -> CrmConfig:
        mail = self.url.startswith("mailto:")
        if mail and (self.kind != "adf" or "@" not in self.url):
            raise ValueError("a mailto: URL is for ADF dealers and names an address (mailto:leads@dealer)")
        if not mail and not self.url.startswith(("http://", "https://")):
            raise ValueError("url: expected http(s)://... (or mailto: for an ADF dealer)")
        return self


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    states: list[str] = Field(min_length=1)
    cities: list[str] = Field(default_factory=list, description="empty: every city of the states")
    models: list[str] = Field(default_factory=list, description="empty: every model")
    daily_capacity: int = Field(ge=0)
    priority: int = Field(default=100, description="lower is preferred; equals share leads in turn")
    weight: int = Field(default=1, ge=1, le=100, description="share among dealers of the same priority")


class HoursConfig(BaseModel):
    """Opening hours: the SLA clock runs only while the dealer is open; routing prefers open dealers."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "America/Sao_Paulo"
    weekly: dict[str, list[str]] = Field(description='weekday -> intervals, e.g. mon: ["08:00-18:00"]')
    holidays: str | None = Field(default=None, description='national (and state) holidays: "BR", "BR-SP"')
    closed: list[date] = Field(default_factory=list, description="the dealer's own closed days")

    @model_validator(mode="after")
    def _valid_calendar(self) -> HoursConfig:
        if not self.weekly and (self.holidays or self.closed):
            # Without weekly hours the dealer is always open: its holidays and closed days close nothing.
            raise ValueError(
                'holidays and closed days need weekly hours (a dealer open around the clock: "00:00-24:00"'
                " on each day)"
            )
        from_config(self.stored())  # unknown zones, weekdays or regions, overlaps: a clear error
        return self

    def stored(self, today: date | None = None) -> dict[str, Any]:
        """The form kept in the database, with the region's holidays of the years around ``today``
        resolved now (``core.business_hours.holiday_calendar``)."""
        stored: dict[str, Any] = {
            "timezone": self.timezone,
            "weekly": self.weekly,
            "holidays": self.holidays,
            "closed": [day.isoformat() for day in self.closed],
        }
        if self.holidays:
            stored["holiday_calendar"] = holiday_calendar(self.holidays, today or date.today())
        return stored


class SlaConfig(BaseModel):
    """How soon the dealer must accept a lead, in its open hours, before the lead moves on."""

    model_config = ConfigDict(extra="forbid")

    accept_within_minutes: int = Field(ge=1, le=7 * 24 * 60)
    status_poll_seconds: int | None = Field(
        default=None, ge=30, description="REST dealers: read each lead's status this often"
    )


class DealerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DealerId
    name: str = Field(min_length=1)
    active: bool = True
    crm: CrmConfig
    routing: RoutingConfig
    hours: HoursConfig | None = None
    sla: SlaConfig | None = None
    field_mapping: dict[str, str] = Field(
        min_length=1,
        description='target field -> Zoho lead field; a value starting with "=" is a literal',
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, dealer_id: str) -> str:
        if dealer_id == UNLINKED_DEALER:
            raise ValueError(f"{UNLINKED_DEALER!r} is reserved: the warehouse's deals without a dealer")
        return dealer_id

    @field_validator("sla")
    @classmethod
    def _poll_needs_rest(cls, sla: SlaConfig | None, info: Any) -> SlaConfig | None:
        crm = info.data.get("crm")
        if sla and sla.status_poll_seconds and crm is not None and crm.kind != "rest":
            raise ValueError("status_poll_seconds: only REST dealers can be asked for a lead's status")
        return sla

    @model_validator(mode="after")
    def _sla_fits_in_open_hours(self) -> DealerEntry:
        # The SLA clock runs in open time: hours too few for the SLA within a year would fail each
        # delivery's deadline after the dealer's CRM already took the lead.
        if self.sla is None or self.hours is None:
            return self
        minutes = self.sla.accept_within_minutes
        try:
            from_config(self.hours.stored()).add_open_time(utcnow(), timedelta(minutes=minutes))
        except ValueError:
            raise ValueError(
                f"sla.accept_within_minutes: {minutes} open minutes do not fit in a year of this dealer's"
                f" hours from today ({HORIZON_DAYS} days)"
            ) from None
        return self

    @model_validator(mode="after")
    def _adf_required_parts(self) -> DealerEntry:
        # ADF requires a vehicle's make and model, the customer's name and an e-mail or phone, and the
        # vendor's e-mail or phone (a mailto: dealer's inbox serves): the mapping must name each.
        if self.crm.kind != "adf":
            return self
        if unknown := sorted(set(self.field_mapping) - ADF_TARGETS):
            raise ValueError(
                f"field_mapping: ADF has no place for {', '.join(unknown)} (its targets: "
                f"{', '.join(sorted(ADF_TARGETS))})"
            )
        interest = self.field_mapping.get("vehicle_interest", "")
        if interest.startswith("=") and interest[1:] not in ADF_INTERESTS:
            raise ValueError(f"vehicle_interest: {interest[1:]!r} is not one of {', '.join(ADF_INTERESTS)}")
        mapped = {target for target, source in self.field_mapping.items() if source.strip() not in ("", "=")}
        missing = adf_missing(self.crm.url, mapped)
        if missing:
            wanted = "; ".join(f"{part}: {' or '.join(names)}" for part, names in missing.items())
            raise ValueError(
                f"an ADF dealer maps what ADF requires, and this one does not map {wanted} (a literal"
                ' serves: "=Chevrolet", "=leads@dealer")'
            )
        return self


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dealers: list[DealerEntry]

    @model_validator(mode="after")
    def _unique_ids(self) -> RulesFile:
        ids = [d.id for d in self.dealers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"dealer ids must be unique: {', '.join(duplicates)}")
        return self


def unheard_dealers(rules: RulesFile, webhook_secrets: Collection[str]) -> list[str]:
    """Active dealers with an SLA that could never report an acceptance in time: no webhook secret (their
    reports would be answered 401) and a CRM the hub does not read. Each of their leads would be withdrawn
    when the SLA passed."""
    return [
        dealer.id
        for dealer in rules.dealers
        if dealer.active
        and dealer.sla is not None
        and not dealer.sla.status_poll_seconds
        and dealer.id not in webhook_secrets
    ]


def parse_rules(path: Path) -> RulesFile:
    """Read and validate a rules file; raises ``ValueError`` naming what is wrong."""
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return RulesFile.model_validate(data)


async def apply_rules(sessions: async_sessionmaker[AsyncSession], rules: RulesFile) -> dict[str, int]:
    """Upsert every dealer of the file; dealers missing from it are deactivated, never deleted.

    The rotation state (``last_assigned_at``) of existing dealers is kept.
    """
    counts = {"created": 0, "updated": 0, "deactivated": 0}
    async with sessions.begin() as session:
        existing = {d.id: d for d in await session.scalars(select(Dealer))}
        for entry in rules.dealers:
            dealer = existing.pop(entry.id, None)
            if dealer is None:
                dealer = Dealer(id=entry.id)
                session.add(dealer)
                counts["created"] += 1
            else:
                counts["updated"] += 1
            _copy(entry, dealer)
        for dealer in existing.values():
            if dealer.active:
                dealer.active = False
                counts["deactivated"] += 1
    return counts


def _copy(entry: DealerEntry, dealer: Dealer) -> None:
    dealer.name = entry.name
    dealer.active = entry.active
    dealer.crm_kind = entry.crm.kind
    dealer.crm_url = entry.crm.url
    dealer.field_mapping = dict(entry.field_mapping)
    dealer.states = list(entry.routing.states)
    dealer.cities = list(entry.routing.cities)
    dealer.models = list(entry.routing.models)
    dealer.daily_capacity = entry.routing.daily_capacity
    dealer.priority = entry.routing.priority
    dealer.weight = entry.routing.weight
    dealer.hours = entry.hours.stored() if entry.hours else None
    dealer.sla_minutes = entry.sla.accept_within_minutes if entry.sla else None
    dealer.status_poll_seconds = entry.sla.status_poll_seconds if entry.sla else None
