"""The settings every dbt test builds with: the shared emulator, datasets of the test's own."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings


@pytest.fixture
def settings(warehouse_settings: dict[str, Any]) -> Settings:
    return Settings(environment="test", bigquery_timeout_seconds=10, **warehouse_settings)
