"""Activities of the lead warehouse sync: a page of the lead flow's changes from the portal database,
landed in bronze once.

A page is read in the order of its kind's change time (``db.lead_changes``), so it ends at a cursor the
workflow keeps. Each version's event key is checked against bronze before landing, and what lands is
appended at the workflow's stream cursors: a page read again (a retried attempt, a window that overlaps
the last one) adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import external_call
from activities.heartbeats import heartbeating
from activities.pacing import first_attempt
from core.metrics import count_sync
from db import lead_changes
from warehouse.landing import BronzeRecord, Warehouse, landed_since
from warehouse.leads import TABLE_OF_KIND, lead_record
from warehouse.streams import StreamCursor


@dataclass
class LeadChangesPageInput:
    kind: str  # db.lead_changes.KINDS
    since: str | None  # ISO 8601 UTC; None: from the first change
    until: str
    after_at: str | None  # the previous page's cursor; None: the window's start
    after_key: str | None
    cursors: dict[str, StreamCursor] = field(default_factory=dict)  # bronze table -> where to append
    limit: int = 2000


@dataclass
class LeadChangesPageResult:
    after_at: str | None
    after_key: str | None
    done: bool  # fewer than ``limit`` changes: the kind's window is landed
    cursors: dict[str, StreamCursor]
    read: int = 0
    landed: int = 0
    already_landed: int = 0


class LeadWarehouseActivities:
    """Holds the warehouse and the portal database, built once per worker."""

    def __init__(self, warehouse: Warehouse, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._warehouse = warehouse
        self._sessions = sessions

    @activity.defn
    async def land_lead_changes(self, params: LeadChangesPageInput) -> LeadChangesPageResult:
        """Read the next page of one kind of change and land the versions bronze does not hold yet."""
        after = None
        if params.after_at is not None and params.after_key is not None:
            after = lead_changes.Cursor(datetime.fromisoformat(params.after_at), params.after_key)
        since = datetime.fromisoformat(params.since) if params.since else None
        # A warehouse refusal for good (access denied, rows the table will not take) fails the run by
        # name, as the other syncs' pages do, instead of being retried as if BigQuery were away.
        with external_call():
            async with heartbeating():
                found = await lead_changes.changes(
                    self._sessions,
                    params.kind,
                    since,
                    datetime.fromisoformat(params.until),
                    after,
                    params.limit,
                )
                result = LeadChangesPageResult(
                    params.after_at, params.after_key, len(found) < params.limit, dict(params.cursors)
                )
                if found:
                    await self._land(params, found, result)
        count_sync("leads", read=result.read, landed=result.landed, unchanged=result.already_landed)
        return result

    async def _land(
        self, params: LeadChangesPageInput, found: list[lead_changes.Change], result: LeadChangesPageResult
    ) -> None:
        table = TABLE_OF_KIND[params.kind]
        records: dict[str, BronzeRecord] = {}
        for change in found:
            record = lead_record(change.kind, change.fields, change.at)
            records.setdefault(record.event_key, record)
        since = landed_since(change.at for change in found)  # none landed before the portal had it
        entities = sorted({record.entity_id for record in records.values()})
        landed = await self._warehouse.landed_keys(
            [table], list(records), entity_ids=entities, landed_since=since
        )
        new = [record for key, record in records.items() if key not in landed]
        cursor = params.cursors.get(table, StreamCursor()) if first_attempt() else StreamCursor()
        result.cursors[table] = await self._warehouse.land_at(table, cursor, new)
        last = found[-1].cursor
        result.after_at, result.after_key = last.at.isoformat(), last.key
        result.read, result.landed = len(found), len(new)
        result.already_landed = len(found) - len(new)
