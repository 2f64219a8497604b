"""A generated history of the lead flow and its deals, as bronze records, for the dbt benchmark.

Each lead is received, routed and delivered to one of a few dozen dealers; most are accepted within
minutes to hours, some go further (contacted, qualified, sold) and about a third become a Zoho deal,
of which some are won. The records are built by the same code the lead warehouse sync lands with
(``warehouse.leads.lead_record``), so their keys and typed columns are the real ones.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from warehouse.landing import BronzeRecord
from warehouse.leads import TABLE_OF_KIND, lead_record

STATES = {"SP": ["São Paulo", "Campinas"], "PR": ["Curitiba", "Londrina"], "RJ": ["Rio de Janeiro"]}
MODELS = ["Onix", "Tracker", "Spin", "S10"]
DEALER_STATUSES = ["accepted", "contacted", "qualified", "sold"]
STAGES = ["Qualification", "Negotiation/Review"]


@dataclass(frozen=True)
class LeadHistory:
    """``leads`` leads received over ``days`` days up to ``end``, the same for the same ``seed``."""

    leads: int
    days: int
    end: datetime
    seed: int = 20261204
    dealers: int = 40

    def records(self, positions: range) -> Iterator[tuple[str, BronzeRecord]]:
        """(bronze table, record) of every change of the leads at ``positions``, oldest lead first."""
        for position in positions:
            yield from self._lead(position)

    def _lead(self, position: int) -> Iterator[tuple[str, BronzeRecord]]:
        rng = random.Random(self.seed * 1_000_003 + position)
        received = self.end - timedelta(days=self.days) + timedelta(days=self.days * position / self.leads)
        lead_id = f"58{self.seed % 1000:03d}{position:014d}"
        state = rng.choice(list(STATES))
        where = {"state": state, "city": rng.choice(STATES[state]), "model": rng.choice(MODELS)}
        dealer_id = f"dealer-{rng.randrange(self.dealers):02d}"
        delivered = received + timedelta(seconds=rng.uniform(2, 30))

        def change(kind: str, at: datetime, **fields: Any) -> tuple[str, BronzeRecord]:
            return TABLE_OF_KIND[kind], lead_record(kind, fields, at)

        def status(name: str, at: datetime, dealer: str | None) -> tuple[str, BronzeRecord]:
            return change(
                "status", at, lead_id=lead_id, status=name, dealer_id=dealer or "", changed_at=at, **where
            )

        yield status("received", received, None)
        yield status("routed", received + timedelta(seconds=1), dealer_id)
        yield status("delivered", delivered, dealer_id)
        reached = rng.choices(range(len(DEALER_STATUSES) + 1), weights=[15, 35, 25, 15, 10])[0]
        at = delivered
        for name in DEALER_STATUSES[:reached]:
            at += timedelta(minutes=rng.expovariate(1 / 45))
            yield status(name, at, dealer_id)
        yield change(
            "delivery", at, lead_id=lead_id, dealer_id=dealer_id, status="delivered",
            routing_reason="region", claimed_at=received, delivered_at=delivered,
            accept_by=delivered + timedelta(minutes=30),
            dealer_status=DEALER_STATUSES[reached - 1] if reached else None,
            dealer_status_at=at if reached else None,
        )  # fmt: skip
        if reached >= 2 and rng.random() < 0.6:
            yield from self._deal(rng, position, lead_id, at)

    def _deal(
        self, rng: random.Random, position: int, lead_id: str | None, converted: datetime
    ) -> Iterator[tuple[str, BronzeRecord]]:
        deal_id = f"59{self.seed % 1000:03d}{position:014d}"
        moves = [
            (stage, converted + timedelta(days=step * rng.uniform(1, 5))) for step, stage in enumerate(STAGES)
        ]
        if rng.random() < 0.5:
            moves.append(
                ("Closed Won" if rng.random() < 0.6 else "Closed Lost", moves[-1][1] + timedelta(days=2))
            )
        for stage, at in moves:
            yield (
                TABLE_OF_KIND["deal_stage"],
                lead_record("deal_stage", {"deal_id": deal_id, "stage": stage, "changed_at": at}, at),
            )
        stage, at = moves[-1]
        fields = {
            "deal_id": deal_id, "lead_id": lead_id, "stage": stage,
            "amount_cents": rng.randrange(80_000, 400_000) * 100, "probability": None, "owner": None,
            "closing_date": None, "modified_at": at,
        }  # fmt: skip
        yield TABLE_OF_KIND["deal"], lead_record("deal", fields, at)
