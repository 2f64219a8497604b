"""The warehouse layer on the shared emulator, in datasets of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.settings import Settings
from warehouse import Warehouse


@pytest.fixture
async def warehouse(warehouse_settings: dict[str, Any]) -> AsyncIterator[Warehouse]:
    settings = Settings(environment="test", bigquery_timeout_seconds=10, **warehouse_settings)
    warehouse = Warehouse.from_settings(settings)
    yield warehouse
    await warehouse.aclose()
