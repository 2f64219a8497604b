"""A customer page's claim of its scroll call (db.scrolls) waits out a database briefly away: the token
has not moved, so the page goes on with it instead of scrolling the window again on its retry."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import exc
from temporalio.testing import ActivityEnvironment

import activities.vtex_customers as customers_module
from activities.vtex_customers import VtexCustomerActivities


def activities_with_claims(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> list[int]:
    """The page activities, their claims answering ``answers`` in turn (an exception is raised); the
    counts each claim was asked with."""
    asked: list[int] = []

    async def claim(_sessions: Any, _token: str, made: int) -> int | None:
        asked.append(made)
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return cast(int | None, answer)

    monkeypatch.setattr(customers_module, "claim_scroll_call", claim)
    monkeypatch.setattr(customers_module, "CLAIM_RETRY_SECONDS", 0.01)
    return asked


def page_activities() -> VtexCustomerActivities:
    return VtexCustomerActivities(cast(Any, None), cast(Any, None), cast(Any, None), cast(Any, None))


async def test_a_claim_waits_out_a_database_briefly_away(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = activities_with_claims(monkeypatch, [exc.TimeoutError("no connection free"), 3])
    claimed = await ActivityEnvironment().run(page_activities()._claim, "token", 2)
    assert (claimed, asked) == (3, [2, 2])


async def test_a_claim_gives_up_on_a_bug_at_once_and_on_a_database_away_for_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bug = exc.ProgrammingError("select", {}, Exception("no such column"))
    asked = activities_with_claims(monkeypatch, [bug])
    with pytest.raises(exc.ProgrammingError):
        await ActivityEnvironment().run(page_activities()._claim, "token", 2)
    assert asked == [2]
    away = [exc.TimeoutError("no connection free")] * customers_module.CLAIM_TRIES
    asked = activities_with_claims(monkeypatch, list(away))
    with pytest.raises(exc.TimeoutError):
        await ActivityEnvironment().run(page_activities()._claim, "token", 2)
    assert len(asked) == customers_module.CLAIM_TRIES
