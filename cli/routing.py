"""``hub routing simulate`` and ``hub leads explain``: which dealers routing keeps or drops, and why."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cli.command import Context, Subcommands, command
from cli.output import FAILED
from core.timeutil import utcnow
from db import deliveries, lead_status, routing
from db.engine import one_off_sessions

VERDICT_COLUMNS = {
    "dealer_id": "DEALER",
    "kept": "KEPT",
    "why": "WHY",
    "used_today": "USED",
    "daily_capacity": "CAPACITY",
    "accept_by": "ACCEPT BY",  # the SLA deadline of a lead delivered at the time routed
}
DELIVERY_COLUMNS = {
    "dealer_id": "DEALER",
    "status": "STATUS",
    "dealer_status": "REPORTED",
    "reason": "WHY CHOSEN",
    "withdrawal_reason": "WHY WITHDRAWN",
    "withdrawal_at_crm": "AT ITS CRM",
    "accept_by": "ACCEPT BY",
}


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("routing", help="routing: what it would decide for a lead, and why")
    actions = group.add_subparsers(dest="action", required=True)
    simulate = command(
        actions,
        "simulate",
        "rank the dealers for a lead like this one, claiming nothing",
        common,
        simulate_lead,
    )
    simulate.add_argument("--state", required=True, help="the lead's state, e.g. SP")
    simulate.add_argument("--city", default="", help="the lead's city")
    simulate.add_argument("--model", default="", help="the car model of interest")
    simulate.add_argument(
        "--at", type=datetime.fromisoformat, help="ISO 8601 time to route at (default: now), e.g. for hours"
    )


def add_explain(actions: Subcommands, common: argparse.ArgumentParser) -> None:
    explain = command(
        actions, "explain", "show a lead's deliveries, why each dealer was chosen, and routing now", common,
        explain_lead,
    )  # fmt: skip
    explain.add_argument("lead_id", help="the Zoho lead id")


async def simulate_lead(args: argparse.Namespace, ctx: Context) -> int:
    profile = routing.LeadProfile(state=args.state, city=args.city, model=args.model)
    at = args.at or utcnow()
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(ctx.settings.business_timezone))
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        explained = await routing.explain(sessions, profile, _day(ctx, at), at)
    _show(ctx, explained)
    return 0


async def explain_lead(args: argparse.Namespace, ctx: Context) -> int:
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        lead = await lead_status.get_lead(sessions, args.lead_id)
        profile = await lead_status.routing_profile(sessions, args.lead_id)
        if lead is None:
            return ctx.out.fail(f"no lead {args.lead_id} in the portal database")
        at = utcnow()
        async with sessions() as session:
            passed_over = await deliveries.passed_over(session, args.lead_id)
            with_fallback_owner = await deliveries.with_fallback_owner(session, args.lead_id)
        withdrawals = (await deliveries.losses(sessions, args.lead_id)).count
        explained = (
            await routing.explain(sessions, routing.LeadProfile(**profile), _day(ctx, at), at, passed_over)
            if profile
            else None
        )
    ctx.out.say(f"lead {lead.lead_id}: {lead.status}" + (f" at {lead.dealer_id}" if lead.dealer_id else ""))
    rows: list[dict[str, Any]] = [delivery.model_dump() for delivery in lead.deliveries]
    if rows:
        ctx.out.table("delivery", rows, DELIVERY_COLUMNS)
    if explained is None:
        ctx.out.say("its routing profile was not kept (routed before this version): use hub routing simulate")
        return FAILED if not rows else 0
    ctx.out.say(f"routing now for {profile}:")
    cap = ctx.settings.lead_max_reroutes
    # As the lead's run decides: no dealer is claimed past the cap, nor for a lead at its fallback owner.
    if withdrawals > cap or with_fallback_owner:
        ctx.out.table("candidate", _rows(explained), VERDICT_COLUMNS)
        why = (
            f"{withdrawals} dealers missed their SLA, more than HUB_LEAD_MAX_REROUTES={cap}"
            if withdrawals > cap
            else "it went to its fallback owner, and support has not moved it since"
        )
        ctx.out.show("choice", {"dealer_id": None}, f"choice: none ({why}: the fallback owner has it)")
        return 0
    _show(ctx, explained)
    return 0


def _day(ctx: Context, at: datetime) -> Any:
    return at.astimezone(ZoneInfo(ctx.settings.business_timezone)).date()


def _rows(explained: routing.Explanation) -> list[dict[str, Any]]:
    return [{**vars(verdict), "kept": "yes" if verdict.kept else "no"} for verdict in explained.verdicts]


def _show(ctx: Context, explained: routing.Explanation) -> None:
    ctx.out.table("candidate", _rows(explained), VERDICT_COLUMNS)
    if explained.chosen:
        ctx.out.show("choice", {"dealer_id": explained.chosen}, f"choice: {explained.chosen}")
    else:
        ctx.out.show("choice", {"dealer_id": None}, "choice: none (the lead would wait for support's assign)")
