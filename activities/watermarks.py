"""Activities that read and move a sync's watermark (``db.watermarks``), for any scheduled sync."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from db.watermarks import advance_watermark, read_watermark


@dataclass
class WatermarkInput:
    name: str


@dataclass
class WatermarkResult:
    watermark: str | None


@dataclass
class AdvanceWatermarkInput:
    name: str
    to: str


class WatermarkActivities:
    """Holds the central database, where the watermarks are kept."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn
    async def read_watermark(self, params: WatermarkInput) -> WatermarkResult:
        """Where the sync landed up to, or None before its first complete run."""
        watermark = await read_watermark(self._sessions, params.name)
        return WatermarkResult(None if watermark is None else watermark.isoformat())

    @activity.defn
    async def advance_watermark(self, params: AdvanceWatermarkInput) -> WatermarkResult:
        """Move the watermark forward to ``to`` (never back); call it once the window is landed."""
        moved = await advance_watermark(self._sessions, params.name, datetime.fromisoformat(params.to))
        return WatermarkResult(moved.isoformat())
