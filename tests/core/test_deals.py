"""What the central database can store of a deal's amount: checked once rounded to the cent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.deals import InvalidDeal, checked_amount, deal_from_zoho


@pytest.mark.parametrize(
    ("amount", "stored"),
    [
        ("12.345", "12.35"),  # half away from zero, as PostgreSQL rounds NUMERIC(18, 2)
        ("-12.345", "-12.35"),
        ("9999999999999999.994", "9999999999999999.99"),
        ("1E-999999999", "0.00"),  # an exponent no NUMERIC holds, a value it does
        ("0." + "1" * 20_000, "0.11"),  # more decimals than PostgreSQL's numeric takes
    ],
)
def test_amounts_are_kept_to_the_cent(amount: str, stored: str) -> None:
    assert checked_amount(Decimal(amount)) == Decimal(stored)
    assert str(checked_amount(Decimal(amount))) == stored


@pytest.mark.parametrize("amount", ["9999999999999999.995", "1e16", "-1e16", "1e40", "NaN", "Infinity"])
def test_amounts_beyond_the_column_are_refused(amount: str) -> None:
    with pytest.raises(ValueError, match="beyond 16 digits"):
        checked_amount(Decimal(amount))


def test_a_zoho_record_beyond_the_column_is_invalid() -> None:
    record = {"id": "1", "Modified_Time": "2026-11-24T09:00:00-03:00", "Amount": 9999999999999999.995}
    with pytest.raises(InvalidDeal):
        deal_from_zoho(record)
