"""The VTEX Orders hook as it arrives at ``POST /webhooks/vtex/orders``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.vtex import ORDER_ID_PATTERN, ChangeTime, OrderEvent, order_event


class OrderOrigin(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    account: str = Field(alias="Account", min_length=1)
    key: str | None = Field(default=None, alias="Key")


class OrderHook(BaseModel):
    """An Orders hook delivery. ``LastState`` and ``CurrentChange`` are missing in some of VTEX's examples."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    order_id: str = Field(alias="OrderId", pattern=ORDER_ID_PATTERN)
    state: str = Field(alias="State", min_length=1, max_length=64)
    last_state: str | None = Field(default=None, alias="LastState", max_length=64)
    last_change: ChangeTime = Field(default=None, alias="LastChange")
    current_change: ChangeTime = Field(default=None, alias="CurrentChange")
    domain: str | None = Field(default=None, alias="Domain")
    origin: OrderOrigin = Field(alias="Origin")

    @model_validator(mode="after")
    def _has_a_time(self) -> OrderHook:
        if self.current_change is None and self.last_change is None:
            raise ValueError("CurrentChange or LastChange is required")
        return self

    def event(self, payload: dict[str, Any]) -> OrderEvent:
        return order_event(self.order_id, self.state, self.current_change, self.last_change, payload)
