"""Dealers and routing rules from a YAML file into the portal database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Dealer

DealerId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


class CrmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["rest", "soap"]
    url: str = Field(min_length=1, description="REST base URL, or the SOAP service's WSDL URL")


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    states: list[str] = Field(min_length=1)
    cities: list[str] = Field(default_factory=list, description="empty: every city of the states")
    models: list[str] = Field(default_factory=list, description="empty: every model")
    daily_capacity: int = Field(ge=0)
    priority: int = Field(default=100, description="lower is preferred; equals share leads in turn")


class DealerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: DealerId
    name: str = Field(min_length=1)
    active: bool = True
    crm: CrmConfig
    routing: RoutingConfig
    field_mapping: dict[str, str] = Field(
        min_length=1,
        description='target field -> Zoho lead field; a value starting with "=" is a literal',
    )


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
