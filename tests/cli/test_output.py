"""What people and scripts read from ``hub``: aligned tables, JSON lines, times on the command line."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import pytest

from cli.output import Output
from cli.redrive import confirmed
from cli.times import since

ROWS = [
    {"workflow_id": "lead-5725767000000412001", "ended": "completed", "closed_at": None},
    {"workflow_id": "lead-7", "ended": "terminated", "closed_at": datetime(2026, 11, 25, 6, 0, tzinfo=UTC)},
]
COLUMNS = {"workflow_id": "WORKFLOW ID", "ended": "ENDED", "closed_at": "CLOSED AT"}


def test_a_table_for_people_is_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    Output(json_lines=False).table("lead", ROWS, COLUMNS)
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["WORKFLOW", "ID", "ENDED", "CLOSED", "AT"]
    # Every column starts where its header starts.
    for name in ("ENDED", "CLOSED AT"):
        column = header.index(name)
        assert first[column - 2 : column] == "  " and first[column] != " "
        assert second[column - 2 : column] == "  " and second[column] != " "
    assert first.endswith("-")  # an empty cell is shown, not left blank
    assert second.endswith("2026-11-25 06:00:00 UTC")


def test_a_table_for_scripts_is_one_json_line_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(json_lines=True)
    out.table("lead", ROWS, COLUMNS)
    out.say("2 leads")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"type": "lead", "workflow_id": "lead-5725767000000412001", "ended": "completed", "closed_at": None},
        {
            "type": "lead",
            "workflow_id": "lead-7",
            "ended": "terminated",
            "closed_at": "2026-11-25T06:00:00+00:00",
        },
        {"type": "message", "message": "2 leads"},
    ]


def test_errors_go_to_stderr_with_exit_code_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert Output(json_lines=True).fail("unknown lead 7") == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "hub: unknown lead 7\n")


def test_since_reads_durations_dates_and_times() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert since("24h", now) == now - timedelta(hours=24)
    assert since("30m", now) == now - timedelta(minutes=30)
    assert since("7d", now) == now - timedelta(days=7)
    assert since("2026-11-20", now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert since("2026-11-20T09:30:00-03:00", now) == datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="not a date"):
        since("yesterday", now)
    with pytest.raises(argparse.ArgumentTypeError, match="outside the years 1 to 9999"):
        since("0001-01-01T00:00:00+01:00", now)


@pytest.mark.parametrize(("answer", "redrive"), [("y", True), ("yes", True), ("", False), ("n", False)])
def test_a_person_at_a_terminal_is_asked_before_a_redrive(
    monkeypatch: pytest.MonkeyPatch, answer: str, redrive: bool
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)
    assert confirmed(Output(json_lines=False), 3, "lead") is redrive
    assert asked == ["Redrive these 3 lead(s)? [y/N] "]
