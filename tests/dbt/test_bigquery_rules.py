"""The checker of the compiled SQL finds what BigQuery would refuse or count differently."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from tests.dbt.bigquery_rules import violations
from warehouse.leads import lead_record
from warehouse.tables import day_start


def test_the_models_before_the_time_macros_break_both_rules() -> None:
    # The lines stg_vtex__orders and the frequency macro compiled to before macros/time.sql.
    old = """
        select timestamp(json_value(payload, '$.creationDate')) as created_at,
               greatest(timestamp_diff(last_at, first_at, day), 30) as span
        from source
    """
    assert violations(old) == [
        "TIMESTAMP_DIFF(last_at, first_at, DAY)",
        "timestamp(JSON_VALUE(payload, '$.creationDate'))",
    ]
    assert violations("select cast(json_value(p, '$.t') as timestamp) from t") != []


def test_typed_times_and_the_days_macro_pass() -> None:
    now = """
        select created_at, div(timestamp_diff(last_at, first_at, second), 86400),
               cast(json_value(p, '$.n') as int64)
        from source
    """
    assert violations(now) == []
    # Parsing a time from JSON at all is refused, even cut to microseconds: the landing types it.
    cut = r"select timestamp(regexp_replace(json_value(p, '$.t'), r'(\.\d{6})\d+', r'\1')) from s"
    assert len(violations(cut)) == 1


def test_a_bronze_read_must_be_bounded_by_a_constant_before_the_window() -> None:
    # The shape of staging and silver before macros/incremental.sql: staging deduplicated all of bronze,
    # and silver's filter came after the window, as a scalar subquery.
    before = """
        with source as (select * from `p`.`bronze`.`vtex_orders`),
        latest as (
            select * from source
            qualify row_number() over (partition by entity_id order by ingested_at desc) = 1
        )
        select * from latest
        where ingested_at >= (select timestamp_sub(max(ingested_at), interval 30 minute) from `p`.`silver`.`orders`)
    """
    assert violations(before) == ["`p`.`bronze`.`vtex_orders` read without a constant ingested_at filter"]
    subquery = "select * from `p`.`bronze`.`vtex_orders` where ingested_at >= (select max(t) from x)"
    assert violations(subquery) != []
    either = "select * from `p`.`x_bronze`.`vtex_orders` where ingested_at >= timestamp '2026-01-01' or true"
    assert violations(either) != []


def test_the_landed_versions_read_passes() -> None:
    now = """
        with versions as (
            select * from `p`.`x_bronze`.`vtex_orders`
            where ingested_at >= timestamp '2026-12-03 06:37:53+00'
        )
        select * from versions
        qualify row_number() over (partition by entity_id order by ingested_at desc) = 1
    """
    assert violations(now) == []
    assert violations("select * from `p`.`silver`.`orders`") == []  # only bronze is partitioned by landing


def test_an_insert_only_merge_has_no_update_clause() -> None:
    # What merge_insert_only compiled to before: an UPDATE clause that never applies, billed as one.
    merge = """
        merge into `p`.`silver`.`order_events` as DBT_INTERNAL_DEST using `p`.`silver`.`t` as DBT_INTERNAL_SOURCE
        on (DBT_INTERNAL_SOURCE.order_event_id = DBT_INTERNAL_DEST.order_event_id)
        {matched}
        when not matched then insert (order_event_id) values (order_event_id)
    """
    before = merge.format(
        matched="when matched and false then update set order_event_id = DBT_INTERNAL_SOURCE.order_event_id"
    )
    assert violations(before) == [
        "WHEN MATCHED AND FALSE THEN UPDATE SET order_event_id = DBT_INTERNAL_SOURCE.order_event_id"
    ]
    assert violations(merge.format(matched="")) == []
    newer = merge.format(
        matched="when matched and DBT_INTERNAL_SOURCE.t > DBT_INTERNAL_DEST.t then update set t = 1"
    )
    assert violations(newer) == []  # a real condition: the update is meant


def test_a_reserved_keyword_is_no_alias_unless_quoted() -> None:
    # The key lookup's first form: the emulator answered it, BigQuery refuses "as at".
    before = "select count(*) > 0 as known, max(changed_at) as at from `p`.`gold`.`customer_days` as range"
    assert [found.split(":")[0] for found in violations(before)] == [
        "reserved keyword at as an alias",
        "reserved keyword range as an alias",
    ]
    quoted = "select max(changed_at) as `at`, max(changed_at) as newest from `p`.`gold`.`customer_days` as days"
    assert violations(quoted) == []


def test_time_literals_are_in_the_canonical_format_and_the_readers_write_them_so() -> None:
    canonical = (
        "select timestamp '2026-01-01 00:00:00+00', timestamp '2026-1-1T10:00:00.123456Z',"
        " date '0999-01-01', timestamp '2026-01-01 10:00:00 America/Sao_Paulo',"
        " datetime '2026-01-01 10:00:00'"
    )
    assert violations(canonical) == []
    # What day_start wrote for a year before 1000, and a time with VTEX's seven fractional digits.
    assert len(violations("select timestamp '999-01-01 00:00:00+00'")) == 1
    assert len(violations("select timestamp '2026-01-01 10:00:00.1234567Z'")) == 1
    for year in (1, 999, 2026, 9999):
        assert violations(f"select {day_start(datetime(year, 1, 1, 12, tzinfo=UTC))}") == []


def test_the_delivery_mark_the_lead_sync_writes_reads_back_as_its_claim_time() -> None:
    """dealer_performance tells a lead's deliveries apart by the "@" mark the lead sync puts in each status
    change's event key (warehouse/leads.py), which the delivery_claimed_at macro casts to a timestamp. The
    macro's own regex and replacement, applied to keys the sync writes, give canonical timestamp text
    (BigQuery's cast refuses other text, and safe_cast would make it null) naming the claim exactly."""
    macro = (Path(__file__).resolve().parents[2] / "dbt" / "macros" / "leads.sql").read_text()
    body = macro.split("macro delivery_claimed_at(event_key)", 1)[1].split("endmacro", 1)[0]
    written = re.search(r"replace\(regexp_extract\(\{\{ event_key \}\}, r'(.+?)'\), '(.)', '(.)'\)", body)
    assert written is not None, body
    pattern, old, new = written.groups()
    for claimed in (
        datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 5, 250000, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        fields = {"lead_id": "l-1", "status": "contacted", "dealer_id": "d-1", "changed_at": claimed}
        record = lead_record("status", {**fields, "delivery_claimed_at": claimed}, claimed)
        match = re.search(pattern, record.event_key)
        assert match is not None, record.event_key
        text = match.group(1).replace(old, new)
        assert violations(f"select timestamp '{text}'") == [], text
        assert datetime.fromisoformat(text) == claimed
