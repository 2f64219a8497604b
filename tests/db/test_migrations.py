"""Migrations that change data: what a database written by an earlier version holds afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constants import LeadStatus
from db import deliveries, feedback, lead_status
from db.engine import create_engine, session_factory, sync_url
from db.migrate import alembic_config, upgrade
from db.routing import LeadProfile
from db.rules import RulesFile, apply_rules


async def a_lead_claimed_by_dealer_a(url: str, sessions: async_sessionmaker[AsyncSession]) -> datetime:
    """A portal at the newest schema with one dealer, ``a``, and lead ``L`` received and claimed by it;
    the time of both."""
    upgrade(url)
    dealer = {"id": "a", "name": "A", "crm": {"kind": "rest", "url": "http://crm/a"}}
    routing = {"routing": {"states": ["SP"], "daily_capacity": 10}, "field_mapping": {"external_id": "id"}}
    await apply_rules(sessions, RulesFile.model_validate({"dealers": [{**dealer, **routing}]}))
    at = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    await lead_status.record_status(sessions, lead_id="L", status=LeadStatus.RECEIVED, workflow_id="w", at=at)
    assert await deliveries.claim_next(sessions, "L", LeadProfile("SP", "", ""), at.date(), at) is not None
    return at


def test_deal_changes_take_their_change_time_and_the_lead_sync_reads_everything_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    command.upgrade(alembic_config(url), "0007")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "insert into opportunities (deal_id, stage, modified_time, updated_at)"
                " values ('k-1', 'Closed Won', '2026-12-01 10:00:00.000000', '2026-12-01 10:00:01.000000')"
            )
        )
        connection.execute(
            sa.text(
                "insert into opportunity_stage_changes (deal_id, stage, changed_at)"
                " values ('k-1', 'Closed Won', '2026-12-01 10:00:00.000000')"
            )
        )
        connection.execute(
            sa.text(
                "insert into sync_watermarks (name, watermark, updated_at) values"
                " ('portal-leads', '2026-12-03 00:00:00.000000', '2026-12-03 00:00:00.000000'),"
                " ('vtex-customers', '2026-12-03 00:00:00.000000', '2026-12-03 00:00:00.000000')"
            )
        )
    upgrade(url)
    with engine.connect() as connection:
        recorded = connection.execute(sa.text("select recorded_at from opportunity_stage_changes")).scalar()
        watermarks = connection.execute(sa.text("select name from sync_watermarks")).scalars().all()
    engine.dispose()
    assert str(recorded).startswith("2026-12-01 10:00:00")
    # The lead sync's next run reads every record once, the deals from before included; others keep theirs.
    assert watermarks == ["vtex-customers"]


async def test_a_report_recorded_before_0010_is_still_recognised_when_resent(tmp_path: Path) -> None:
    """A report from before 0010 names no delivery; one that arrived after the current delivery's claim is
    taken for a report about it: a dealer resending it after the upgrade gets "repeated", not a second
    report (or a clash in the lead's history)."""
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    engine = create_engine(url)
    sessions = session_factory(engine)
    at = await a_lead_claimed_by_dealer_a(url, sessions)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L", dealer_id="a", dealer_lead_id="X", day=at.date(), at=at
        )

    def accept(received: datetime) -> Any:
        return feedback.record(
            sessions, lead_id="L", dealer_id="a", status=LeadStatus.ACCEPTED, at=at, received_at=received
        )

    assert (await accept(at)).outcome == feedback.Outcome.APPLIED
    await engine.dispose()
    command.downgrade(alembic_config(url), "0009")  # the report as the version before kept it
    upgrade(url)
    resent = await accept(at + timedelta(hours=1))
    await engine.dispose()
    assert resent.outcome == feedback.Outcome.REPEATED


def test_reports_per_delivery_go_back_to_one_per_status_and_forward_again(database_url: str) -> None:
    """0010 keys dealer reports by delivery as well; going back keeps each status's first report."""
    engine = sa.create_engine(sync_url(database_url))
    report = (
        "insert into dealer_feedback (lead_id, dealer_id, status, at, received_at, outcome,"
        " delivery_claimed_at) values ('L', 'a', 'accepted', :at, :at, :outcome, :claimed)"
    )
    with engine.begin() as connection:
        for outcome, claimed in (("late", "2026-12-01 10:00:00"), ("applied", "2026-12-01 12:00:00")):
            connection.execute(
                sa.text(report), {"at": "2026-12-01 13:00:00", "outcome": outcome, "claimed": claimed}
            )
    command.downgrade(alembic_config(database_url), "0009")
    with engine.connect() as connection:
        kept = connection.execute(sa.text("select outcome from dealer_feedback")).scalars().all()
    assert kept == ["late"]
    upgrade(database_url)
    with engine.connect() as connection:
        claimed = (
            connection.execute(sa.text("select delivery_claimed_at from dealer_feedback")).scalars().all()
        )
    assert claimed == [None]
    engine.dispose()


def test_history_per_delivery_goes_back_to_one_row_per_status_and_forward_again(database_url: str) -> None:
    """0011 keys the lead's history by delivery as well; going back keeps each status's first row."""
    engine = sa.create_engine(sync_url(database_url))
    change = (
        "insert into lead_status_changes (lead_id, status, dealer_id, at, recorded_at, delivery_claimed_at)"
        " values ('L', 'accepted', 'a', :at, :at, :claimed)"
    )
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "insert into leads (lead_id, status, workflow_id, created_at, updated_at)"
                " values ('L', 'accepted', 'lead-L', '2026-12-01 10:00:00', '2026-12-01 13:00:00')"
            )
        )
        for at, claimed in (
            ("2026-12-01 10:30:00", "2026-12-01 10:00:00"),
            ("2026-12-01 13:00:00", "2026-12-01 12:00:00"),
        ):
            connection.execute(sa.text(change), {"at": at, "claimed": claimed})
    command.downgrade(alembic_config(database_url), "0010")
    with engine.connect() as connection:
        kept = connection.execute(sa.text("select at from lead_status_changes")).scalars().all()
    assert [str(at)[:19] for at in kept] == ["2026-12-01 10:30:00"]
    upgrade(database_url)
    with engine.connect() as connection:
        claimed = (
            connection.execute(sa.text("select delivery_claimed_at from lead_status_changes")).scalars().all()
        )
    assert claimed == [None]
    engine.dispose()


async def test_a_status_recorded_before_0011_is_not_recorded_again(tmp_path: Path) -> None:
    """A status written before 0011 names no delivery; a retry of that write after the upgrade finds it
    (recorded after the current delivery's claim) and adds nothing."""
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    engine = create_engine(url)
    sessions = session_factory(engine)
    at = await a_lead_claimed_by_dealer_a(url, sessions)

    def delivered() -> Any:
        return lead_status.record_status(
            sessions, lead_id="L", status=LeadStatus.DELIVERED, workflow_id="w", at=at, dealer_id="a"
        )

    await delivered()
    await engine.dispose()
    command.downgrade(alembic_config(url), "0010")  # the history as the version before kept it
    upgrade(url)
    await delivered()  # a retried activity
    view = await lead_status.get_lead(sessions, "L")
    await engine.dispose()
    assert view is not None and [h.status for h in view.history] == ["received", "delivered"]


def test_unanswered_releases_go_back_and_forward(database_url: str) -> None:
    """0012 adds what a release keeps of a claim whose CRM never answered; going back drops it."""
    engine = sa.create_engine(sync_url(database_url))
    release = (
        "insert into delivery_releases (lead_id, dealer_id, status_before, released_at, crm_outcome)"
        " values ('L', 'a', 'claimed', '2026-12-01 10:00:00', 'pending')"
    )
    with engine.begin() as connection:
        connection.execute(sa.text(release))
    command.downgrade(alembic_config(database_url), "0011")
    with engine.connect() as connection:
        kept = connection.execute(sa.text("select dealer_id from delivery_releases")).scalars().all()
    assert kept == ["a"]
    upgrade(database_url)
    with engine.connect() as connection:
        outcome = connection.execute(sa.text("select crm_outcome from delivery_releases")).scalars().all()
    assert outcome == [None]
    engine.dispose()


def test_a_release_keeps_the_dealers_lead_id_from_0018_and_drops_it_going_back(database_url: str) -> None:
    """0018 adds the CRM's id of a lead support moved away; releases from before have none (their drop
    looks the lead up by its external id, as before)."""
    upgrade(database_url)
    engine = sa.create_engine(sync_url(database_url))
    release = (
        "insert into delivery_releases (lead_id, dealer_id, status_before, released_at, crm_outcome, {})"
        " values ('L', 'a', 'delivered', '2026-12-01 10:00:00', 'pending', {})"
    )
    with engine.begin() as connection:
        connection.execute(sa.text(release.format("dealer_lead_id", "'CRM-1'")))
    command.downgrade(alembic_config(database_url), "0017")
    with engine.begin() as connection:
        kept = connection.execute(sa.text("select dealer_id from delivery_releases")).scalars().all()
        connection.execute(sa.text(release.format("idempotency_key", "'lead-L-a'")))
    assert kept == ["a"]
    upgrade(database_url)
    with engine.connect() as connection:
        ids = connection.execute(sa.text("select dealer_lead_id from delivery_releases")).scalars().all()
        # 0019 (gone and back with it): deliveries and withdrawals keep the deadline they were given.
        for table in ("deliveries", "withdrawals"):
            assert connection.execute(sa.text(f"select accept_by from {table}")).all() == []
        # 0020 (gone and back too): a delivery notes when its first create went out.
        assert connection.execute(sa.text("select sent_at from deliveries")).all() == []
        # 0021: a lead notes when Zoho took its fallback owner.
        assert connection.execute(sa.text("select fallback_owner_set_at from leads")).all() == []
        # 0022: a move's guards over the reports of the run it ends.
        assert connection.execute(sa.text("select due_at from report_guards")).all() == []
        # 0023: a deal notes when the Zoho record it holds was read.
        assert connection.execute(sa.text("select record_read_at from opportunities")).all() == []
        # 0024: the calls each Master Data scroll token served.
        assert connection.execute(sa.text("select calls from scroll_calls")).all() == []
    assert ids == [None, None]
    engine.dispose()


def test_moves_within_one_second_go_back_to_one_per_time_and_forward_again(database_url: str) -> None:
    """0017 keeps every stage Zoho stamped with one second; going back keeps the one the second ended on
    (the deal's stage there), and the older key refuses a second one again."""
    engine = sa.create_engine(sync_url(database_url))
    move = (
        "insert into opportunity_stage_changes (deal_id, stage, changed_at, recorded_at, settled)"
        " values ('k-1', :stage, '2026-12-01 10:00:00', '2026-12-01 10:00:02', :settled)"
    )
    old_move = move.replace(", settled)", ")").replace(", :settled)", ")")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "insert into opportunities (deal_id, stage, modified_time, updated_at)"
                " values ('k-1', 'Value Proposition', '2026-12-01 10:00:00', '2026-12-01 10:00:02')"
            )
        )
        # The record of that second, stored first, then the earlier move's webhook.
        for stage, settled in (("Value Proposition", True), ("Needs Analysis", False)):
            connection.execute(sa.text(move), {"stage": stage, "settled": settled})
    command.downgrade(alembic_config(database_url), "0016")
    with engine.connect() as connection:
        kept = connection.execute(sa.text("select stage from opportunity_stage_changes")).scalars().all()
    assert kept == ["Value Proposition"]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(old_move), {"stage": "Needs Analysis"})
    upgrade(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text(move), {"stage": "Needs Analysis", "settled": False})
        stages = connection.execute(sa.text("select stage from opportunity_stage_changes order by id"))
        assert stages.scalars().all() == ["Value Proposition", "Needs Analysis"]
    engine.dispose()


def test_a_migration_behind_an_open_transaction_gives_up_instead_of_queueing_every_statement(
    postgres_url: str,
) -> None:
    """0023 adds a column to opportunities, which waits for every transaction that read the table. Held
    behind one, it gives up after a few seconds (the migration Job runs again), rather than hold every
    statement on opportunities queued behind it for as long as that transaction stays open."""
    command.downgrade(alembic_config(postgres_url), "0022")
    engine, pool = sa.create_engine(sync_url(postgres_url)), ThreadPoolExecutor(1)
    with engine.connect() as holder:
        holder.execute(sa.text("select count(*) from opportunities"))  # a transaction left open
        migrating = pool.submit(upgrade, postgres_url)
        try:
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                migrating.result(timeout=30)
        finally:
            holder.rollback()
            pool.shutdown()
    upgrade(postgres_url)  # run again once the table is free
    engine.dispose()
