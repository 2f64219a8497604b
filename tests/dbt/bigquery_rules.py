"""What the compiled dbt SQL must not rely on: the emulator's leniency where BigQuery means otherwise.

Read with a real SQL parser (sqlglot, BigQuery dialect), so a rule sees expressions, not text:
- a JSON string made a TIMESTAMP without its fraction cut to microseconds (VTEX writes 7 digits;
  BigQuery refuses them, the emulator accepts them): use the ``vtex_timestamp`` macro;
- ``TIMESTAMP_DIFF(..., DAY)`` or ``WEEK`` (BigQuery counts 24-hour periods, the emulator calendar
  boundaries): use the ``days_between`` macro.
"""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp

JSON_READS = (exp.JSONExtractScalar, exp.JSONExtract)
CALENDAR_UNITS = {"DAY", "WEEK"}
TIMESTAMP_TYPES = (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ)


def violations(sql: str) -> list[str]:
    """Each place in ``sql`` that breaks a rule, as the offending expression."""
    found = []
    for tree in sqlglot.parse(sql, read="bigquery"):
        if tree is None:
            continue
        for diff in tree.find_all(exp.TimestampDiff):
            unit = diff.args.get("unit")
            if unit is not None and unit.name.upper() in CALENDAR_UNITS:
                found.append(diff.sql("bigquery"))
        for made in tree.find_all(exp.Timestamp, exp.Cast):
            if isinstance(made, exp.Cast) and not made.to.is_type(*TIMESTAMP_TYPES):
                continue
            if _reads_json_untruncated(made.this):
                found.append(made.sql("bigquery"))
    return found


def _reads_json_untruncated(argument: exp.Expression | None) -> bool:
    """Whether ``argument`` is a JSON string not passed through the microsecond cut first."""
    if argument is None:
        return False
    if isinstance(argument, exp.RegexpReplace) and r"\d{6}" in argument.args["expression"].name:
        return False
    return argument.find(*JSON_READS) is not None


def compiled_violations(target: Path) -> dict[str, list[str]]:
    """The violations in every SQL file dbt compiled or ran under ``target``, by file."""
    paths = sorted([*target.glob("compiled/**/*.sql"), *target.glob("run/**/*.sql")])
    assert paths, f"no compiled SQL under {target}"
    report = {}
    for path in paths:
        if found := violations(path.read_text()):
            report[str(path.relative_to(target))] = found
    return report
