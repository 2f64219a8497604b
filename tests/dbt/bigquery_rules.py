"""What the compiled dbt SQL must not rely on: the emulator's leniency where BigQuery means otherwise.

Read with a real SQL parser (sqlglot, BigQuery dialect), so a rule sees expressions, not text:
- a JSON string made a TIMESTAMP (VTEX writes 7 fractional digits; BigQuery refuses them, the emulator
  accepts them): times come typed from bronze, parsed once at landing;
- ``TIMESTAMP_DIFF(..., DAY)`` or ``WEEK`` (BigQuery counts 24-hour periods, the emulator calendar
  boundaries): use the ``days_between`` macro;
- a read of a bronze table without a constant filter on its partition column (``ingested_at``;
  ``quarantined_at`` for quarantine) in the SELECT that reads it
  (its WHERE, which applies before any window): BigQuery prunes partitions only on constant filters, so
  such a read bills all of history, and ``require_partition_filter`` refuses it. Use the
  ``landed_versions`` macro;
- a DATE or TIMESTAMP literal out of BigQuery's canonical format (a year in fewer than four digits,
  more than six fractional digits): BigQuery refuses the query, the emulator reads it;
- a MERGE with an UPDATE clause that never applies (``WHEN MATCHED AND FALSE``): BigQuery bills a MERGE
  with an UPDATE clause for every column of the target it reads, an insert-only one for the columns it
  reads. Leave the clause out (``merge_insert_only``);
- a reserved keyword as an unquoted alias (``max(x) as at``): BigQuery refuses the query.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlglot
from sqlglot import exp

JSON_READS = (exp.JSONExtractScalar, exp.JSONExtract)
# BigQuery's reserved keywords (GoogleSQL lexical structure): one is a name only in backquotes. The
# emulator and the parser here take ``max(x) as at``; BigQuery refuses it with a syntax error.
RESERVED = set(
    """ALL AND ANY ARRAY AS ASC ASSERT_ROWS_MODIFIED AT BETWEEN BY CASE CAST COLLATE CONTAINS CREATE CROSS
    CUBE CURRENT DEFAULT DEFINE DESC DISTINCT ELSE END ENUM ESCAPE EXCEPT EXCLUDE EXISTS EXTRACT FALSE FETCH
    FOLLOWING FOR FROM FULL GROUP GROUPING GROUPS HASH HAVING IF IGNORE IN INNER INTERSECT INTERVAL INTO IS
    JOIN LATERAL LEFT LIKE LIMIT LOOKUP MERGE NATURAL NEW NO NOT NULL NULLS OF ON OR ORDER OUTER OVER
    PARTITION PRECEDING PROTO QUALIFY RANGE RECURSIVE RESPECT RIGHT ROLLUP ROWS SELECT SET SOME STRUCT
    TABLESAMPLE THEN TO TREAT TRUE UNBOUNDED UNION UNNEST USING WHEN WHERE WINDOW WITH WITHIN""".split()
)
CALENDAR_UNITS = {"DAY", "WEEK"}
# Bronze tables are partitioned by landing time; quarantine by when the record was refused.
PARTITION_COLUMNS = {"quarantine": "quarantined_at"}
LANDING_TIME = "ingested_at"
BOUNDS = (exp.GTE, exp.GT, exp.EQ, exp.LT, exp.LTE, exp.Between)
TIMESTAMP_TYPES = (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ)
LITERAL_TYPES = (*TIMESTAMP_TYPES, exp.DataType.Type.DATE, exp.DataType.Type.DATETIME)
# BigQuery's canonical date and time formats: YYYY-[M]M-[D]D[( |T)[H]H:[M]M:[S]S[.F{1,6}]][zone].
CANONICAL_TIME = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{1,2}:\d{1,2}(\.\d{1,6})?)?"
    r"( ?(Z|UTC|[+-]\d{1,2}(:\d{2})?|[A-Za-z_]+/[A-Za-z_/]+))?"
)


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
        for cast in tree.find_all(exp.Cast):
            text = cast.this
            literal = cast.to.is_type(*LITERAL_TYPES) and isinstance(text, exp.Literal) and text.is_string
            if literal and not CANONICAL_TIME.fullmatch(text.this):
                found.append(cast.sql("bigquery"))
        for made in tree.find_all(exp.Timestamp, exp.Cast):
            if isinstance(made, exp.Cast) and not made.to.is_type(*TIMESTAMP_TYPES):
                continue
            if made.this is not None and made.this.find(*JSON_READS) is not None:
                found.append(made.sql("bigquery"))
        for when in tree.find_all(exp.When):
            condition = when.args.get("condition")
            if when.args.get("matched") and isinstance(condition, exp.Boolean) and not condition.this:
                found.append(when.sql("bigquery"))
        for alias in tree.find_all(exp.Alias, exp.TableAlias):
            name = alias.args.get("alias") if isinstance(alias, exp.Alias) else alias.this
            if isinstance(name, exp.Identifier) and not name.quoted and name.name.upper() in RESERVED:
                found.append(f"reserved keyword {name.name} as an alias: {alias.sql('bigquery')}")
        for select in tree.find_all(exp.Select):
            for table in _bronze_tables(select):
                column = PARTITION_COLUMNS.get(table.name, LANDING_TIME)
                if not _filters_by_constant(select, column):
                    found.append(f"{table.sql('bigquery')} read without a constant {column} filter")
    return found


def _bronze_tables(select: exp.Select) -> list[exp.Table]:
    """The bronze tables this SELECT reads itself (in its FROM and joins, not in nested queries)."""
    sources = [select.args.get("from_") or select.args.get("from"), *select.args.get("joins", [])]
    tables = [source.this for source in sources if source is not None]
    return [table for table in tables if isinstance(table, exp.Table) and table.db.endswith("bronze")]


def _filters_by_constant(select: exp.Select, partition_column: str) -> bool:
    """Whether the SELECT's WHERE bounds the column by a constant, in a conjunct that always applies."""
    where = select.args.get("where")
    if where is None:
        return False
    for condition in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        if not isinstance(condition, BOUNDS):
            continue
        sides = [side for side in condition.args.values() if isinstance(side, exp.Expression)]
        column = [side for side in sides if isinstance(side, exp.Column) and side.name == partition_column]
        others = [side for side in sides if side not in column]
        if column and others and all(_constant(side) for side in others):
            return True
    return False


def _constant(expression: exp.Expression) -> bool:
    """A literal, or a function of literals only: no column, no subquery."""
    return expression.find(exp.Column, exp.Select, exp.Subquery) is None


def compiled_violations(target: Path) -> dict[str, list[str]]:
    """The violations in every SQL file dbt compiled or ran under ``target``, by file."""
    paths = sorted([*target.glob("compiled/**/*.sql"), *target.glob("run/**/*.sql")])
    assert paths, f"no compiled SQL under {target}"
    report = {}
    for path in paths:
        if found := violations(path.read_text()):
            report[str(path.relative_to(target))] = found
    return report
