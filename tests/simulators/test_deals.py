from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

from simulators import deal_webhook_fields, generate_deal, generate_deals
from simulators.deals import DEAL_STAGES, FLEET_PRICES, STAGE_PROBABILITIES, account_id
from simulators.leads import BRT, OWNERS

NOW = datetime(2026, 11, 24, 9, 15, tzinfo=BRT)
ZOHO_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}-03:00"


def test_pipeline_is_zohos_standard_one() -> None:
    assert DEAL_STAGES == (
        "Qualification",
        "Needs Analysis",
        "Value Proposition",
        "Id. Decision Makers",
        "Perception Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    )
    assert list(STAGE_PROBABILITIES.values()) == [10, 20, 40, 60, 70, 75, 90, 100, 0]


def test_same_seed_gives_same_deals() -> None:
    assert generate_deals(20, seed=3, now=NOW) == generate_deals(20, seed=3, now=NOW)
    assert generate_deals(20, seed=3, now=NOW) != generate_deals(20, seed=4, now=NOW)
    assert generate_deal(11, now=NOW) == generate_deal(random.Random(11), now=NOW)


def test_deals_look_like_zoho_fleet_deals() -> None:
    deals = generate_deals(200, seed=1, now=NOW)
    assert len({deal["id"] for deal in deals}) == 200
    for deal in deals:
        assert re.fullmatch(r"5725767\d{12}", deal["id"])
        name = re.fullmatch(r"Frota (\d+) (\w+) - (.+)", deal["Deal_Name"])
        assert name is not None
        size, model, company = name.groups()
        list_price = FLEET_PRICES[model] * int(size)
        amount = Decimal(str(deal["Amount"]))
        assert list_price * Decimal("0.86") <= amount <= list_price * Decimal("0.97")
        assert amount == amount.quantize(Decimal("0.01"))
        assert deal["Stage"] in DEAL_STAGES[:-2]  # generated deals are open
        assert deal["Probability"] == STAGE_PROBABILITIES[deal["Stage"]]
        account = deal["Account_Name"]
        assert account["name"].startswith(company) and account["id"] == account_id(account["name"])
        assert re.fullmatch(r"5725767\d{12}", account["id"])
        assert set(deal["Contact_Name"]) == {"id", "name"}
        assert deal["Owner"] in OWNERS
        assert deal["Modified_By"] == {"id": deal["Owner"]["id"], "name": deal["Owner"]["name"]}
        assert re.fullmatch(ZOHO_TIME, deal["Created_Time"])
        assert re.fullmatch(ZOHO_TIME, deal["Modified_Time"])
        created = datetime.fromisoformat(deal["Created_Time"])
        modified = datetime.fromisoformat(deal["Modified_Time"])
        assert NOW - timedelta(days=60) <= created <= modified <= NOW
        assert date.fromisoformat(deal["Closing_Date"]) > created.date()
    assert len({deal["Stage"] for deal in deals}) == 7
    assert {deal["Deal_Name"].split()[2] for deal in deals} == set(FLEET_PRICES)


def test_overrides_win_and_a_stage_brings_its_probability() -> None:
    deal = generate_deal(5, deal_id="5725767000000000042", overrides={"Stage": "Closed Won", "Amount": 1.5})
    assert (deal["id"], deal["Stage"], deal["Probability"], deal["Amount"]) == (
        "5725767000000000042",
        "Closed Won",
        100,
        1.5,
    )
    assert generate_deal(5, overrides={"Stage": "Closed Lost"})["Probability"] == 0
    assert generate_deal(5, overrides={"Stage": "Negotiation/Review", "Probability": 85})["Probability"] == 85
    assert generate_deal(5, overrides={"Stage": "Custom"})["Probability"] in STAGE_PROBABILITIES.values()


def test_webhook_fields_of_a_deal() -> None:
    deal = generate_deal(
        2, deal_id="5725767000000000043", overrides={"Amount": 1234567.8, "Stage": "Value Proposition"}
    )
    assert deal_webhook_fields(deal) == {
        "deal_id": "5725767000000000043",
        "stage": "Value Proposition",
        "modified_time": deal["Modified_Time"],
        "modified_by": deal["Modified_By"]["name"],
        "amount": "1234567.80",
    }
    assert deal_webhook_fields(deal, partial=True) == {"deal_id": "5725767000000000043"}
    empty = deal_webhook_fields({"id": "1", "Amount": None, "Stage": None, "Modified_By": None})
    assert empty == {"deal_id": "1", "stage": "", "modified_time": "", "modified_by": "", "amount": ""}
    assert deal_webhook_fields({"id": "1", "Amount": 250000})["amount"] == "250000.00"
