"""The payload converter every client and worker uses: pydantic JSON, one adapter per type and process."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from contracts.leads import DealerStatusReport
from core.settings import Settings
from core.temporal import data_converter, type_adapter


def a_runs_converter() -> Any:
    """What the worker builds for each workflow run it loads: a new payload converter."""
    return data_converter(Settings(environment="test")).payload_converter_class()


def test_each_runs_converter_reads_a_type_through_the_adapter_built_once() -> None:
    report = DealerStatusReport("D-1", "accepted", datetime(2026, 5, 4, 12, tzinfo=UTC).isoformat())
    payloads = a_runs_converter().to_payloads([report])
    a_runs_converter().from_payloads(payloads, [DealerStatusReport])  # the first run builds it
    before = type_adapter.cache_info()

    for _ in range(5):
        assert a_runs_converter().from_payloads(payloads, [DealerStatusReport]) == [report]

    after = type_adapter.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (5, 0)


def test_values_keep_their_types_and_an_unhashable_hint_is_still_read() -> None:
    converter = a_runs_converter()
    amount = converter.to_payloads([Decimal("1999.90")])
    assert converter.from_payloads(amount, [Decimal]) == [Decimal("1999.90")]

    unhashable = Annotated[int, {"why": "a dict in its metadata"}]
    assert converter.from_payloads(converter.to_payloads([7]), [unhashable]) == [7]
    assert converter.from_payloads(converter.to_payloads([{"a": 1}]), None) == [{"a": 1}]
