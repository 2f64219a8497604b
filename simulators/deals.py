"""Realistic car-fleet deals for Brazilian companies in Zoho CRM's field names, reproducible from a seed."""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

from simulators.leads import BRT, FIRST_NAMES, LAST_NAMES, OWNERS, ZOHO_ORG_PREFIX, zoho_timestamp

DealStage = Literal[
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
]
# Zoho's standard pipeline, in order.
DEAL_STAGES: tuple[str, ...] = get_args(DealStage)
# The probability (percent) Zoho sets for each stage of its standard pipeline.
STAGE_PROBABILITIES: dict[str, int] = dict(
    zip(DEAL_STAGES, (10, 20, 40, 60, 70, 75, 90, 100, 0), strict=True)
)
OPEN_STAGES = DEAL_STAGES[:-2]
# Where freshly generated deals sit: most of a pipeline is in its early stages.
OPEN_STAGE_WEIGHTS = (30, 20, 15, 10, 10, 10, 5)

# Fleet prices in BRL (list price of the base version, before the fleet discount).
FLEET_PRICES: dict[str, Decimal] = {
    "Onix": Decimal("94990.00"),
    "Tracker": Decimal("144990.00"),
    "Spin": Decimal("124590.00"),
    "S10": Decimal("259990.00"),
    "Montana": Decimal("134990.00"),
    "Equinox": Decimal("229990.00"),
}
FLEET_SIZES = (5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60)
FLEET_SIZE_WEIGHTS = (14, 12, 14, 10, 10, 10, 8, 7, 6, 5, 4)
# Companies that buy fleets: rental, logistics, field services, agribusiness.
BUSINESS_KINDS = (
    "Locadora",
    "Transportes",
    "Logística",
    "Construtora",
    "Distribuidora",
    "Agropecuária",
    "Engenharia",
    "Serviços de Telecom",
)
COMPANY_SUFFIXES = ("Ltda", "Ltda", "Ltda", "S.A.", "Eireli")
DEAL_TYPES = ("New Business", "Existing Business")
DEAL_SOURCES = ("Website", "External Referral", "Partner", "Cold Call", "Trade Show")


def stage_probability(stage: Any) -> int | None:
    """The probability Zoho's standard pipeline gives a stage, or None for a stage outside it."""
    return STAGE_PROBABILITIES.get(stage) if isinstance(stage, str) else None


def account_id(name: str) -> str:
    """A stable 19-digit id for an account name: the same company always gets the same id."""
    return f"{ZOHO_ORG_PREFIX}00{zlib.crc32(name.encode()) % 10**10:010d}"


def generate_deal(
    rng: random.Random | int | str | None = None,
    *,
    deal_id: str | None = None,
    now: datetime | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Make one deal record (a car-fleet sale to a Brazilian company) as Zoho CRM's REST API returns it.

    Args:
        rng: A random generator or a seed; the same seed and ``now`` give the same deal.
        deal_id: The record id; a random 19-digit Zoho-style id when omitted.
        now: The moment the deal is generated; it was created up to 60 days before and last modified
            between its creation and ``now``.
        overrides: Fields to set on the generated record (Zoho field names). A ``Stage`` of the standard
            pipeline without a ``Probability`` brings the stage's probability along.

    Returns:
        The deal, with ``id, Deal_Name, Stage, Amount, Closing_Date, Probability, Account_Name{id,name},
        Contact_Name{id,name}, Owner{id,name,email}, Modified_By{id,name}, Type, Lead_Source,
        Created_Time, Modified_Time``. It is always in an open stage unless overridden.
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    model = rng.choice(list(FLEET_PRICES))
    size = rng.choices(FLEET_SIZES, weights=FLEET_SIZE_WEIGHTS)[0]
    discount = Decimal(rng.randint(30, 140)) / 1000  # 3.0% to 14.0% off for a fleet
    amount = (FLEET_PRICES[model] * size * (1 - discount)).quantize(Decimal("0.01"))
    surname = rng.choice(LAST_NAMES)
    kind = rng.choice(BUSINESS_KINDS)
    account = f"{kind} {surname} {rng.choice(COMPANY_SUFFIXES)}"
    contact = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    stage = rng.choices(OPEN_STAGES, weights=OPEN_STAGE_WEIGHTS)[0]
    owner = dict(rng.choice(OWNERS))
    moment = now or datetime.now(BRT)
    created = moment - timedelta(minutes=rng.randint(60, 60 * 24 * 60))
    modified = created + (moment - created) * rng.random()
    closing = created.astimezone(BRT).date() + timedelta(days=rng.randint(20, 150))
    deal: dict[str, Any] = {
        "id": deal_id or f"{ZOHO_ORG_PREFIX}{rng.randrange(10**11, 10**12)}",
        "Deal_Name": f"Frota {size} {model} - {kind} {surname}",
        "Stage": stage,
        "Amount": float(amount),
        "Closing_Date": closing.isoformat(),
        "Probability": STAGE_PROBABILITIES[stage],
        "Account_Name": {"id": account_id(account), "name": account},
        "Contact_Name": {"id": f"{ZOHO_ORG_PREFIX}{rng.randrange(10**11, 10**12)}", "name": contact},
        "Owner": owner,
        "Modified_By": {"id": owner["id"], "name": owner["name"]},
        "Type": rng.choice(DEAL_TYPES),
        "Lead_Source": rng.choice(DEAL_SOURCES),
        "Created_Time": zoho_timestamp(created),
        "Modified_Time": zoho_timestamp(modified),
    }
    fields = dict(overrides or {})
    probability = stage_probability(fields.get("Stage"))
    if probability is not None and "Probability" not in fields:
        fields["Probability"] = probability
    deal.update(fields)
    return deal


def generate_deals(count: int, seed: int = 0, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Make ``count`` deals from one seed.

    Args:
        count: How many deals.
        seed: The seed; the same seed and ``now`` give the same list.
        now: The moment the deals are generated.

    Returns:
        The deals, each as :func:`generate_deal` makes it.
    """
    rng = random.Random(seed)
    return [generate_deal(rng, now=now) for _ in range(count)]
