from __future__ import annotations

import random
import re
from datetime import datetime, timedelta

from simulators.leads import BRT, CITIES, MODELS, generate_lead, generate_leads

NOW = datetime(2026, 11, 24, 9, 15, tzinfo=BRT)


def test_same_seed_gives_same_leads() -> None:
    assert generate_leads(20, seed=3, now=NOW) == generate_leads(20, seed=3, now=NOW)
    assert generate_leads(20, seed=3, now=NOW) != generate_leads(20, seed=4, now=NOW)
    assert generate_lead(11, now=NOW) == generate_lead(random.Random(11), now=NOW)


def test_leads_look_like_zoho_brazilian_leads() -> None:
    leads = generate_leads(200, seed=1, now=NOW)
    assert len({lead["id"] for lead in leads}) == 200
    for lead in leads:
        assert re.fullmatch(r"5725767\d{12}", lead["id"])
        assert lead["City"] in {city.name for city in CITIES[lead["State"]]}
        assert lead["Modelo_de_Interesse"] in MODELS
        assert re.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|net|org)", lead["Email"])
        assert re.fullmatch(r"\+55 \d{2} 9\d{4}-\d{4}", lead["Mobile"])
        assert re.fullmatch(r"\d{5}-\d{3}", lead["Zip_Code"])
        assert set(lead["Owner"]) == {"id", "name", "email"}
        created = datetime.fromisoformat(lead["Created_Time"])
        assert created.utcoffset() == timedelta(hours=-3)
        assert NOW - timedelta(days=3) <= created <= NOW
        assert lead["Modified_Time"] == lead["Created_Time"]
    assert {lead["State"] for lead in leads} == {"SP", "RJ", "MG", "PR", "RS"}


def test_overrides_and_id_win() -> None:
    lead = generate_lead(5, lead_id="5725767000000000042", overrides={"State": "RJ", "City": "Niterói"})
    assert (lead["id"], lead["State"], lead["City"]) == ("5725767000000000042", "RJ", "Niterói")
