"""The checker of the compiled SQL finds what BigQuery would refuse or count differently."""

from __future__ import annotations

from tests.dbt.bigquery_rules import violations


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


def test_the_time_macros_pass() -> None:
    now = r"""
        select timestamp(regexp_replace(json_value(payload, '$.creationDate'), r'(\.\d{6})\d+', r'\1')),
               div(timestamp_diff(last_at, first_at, second), 86400),
               cast(json_value(p, '$.n') as int64)
        from source
    """
    assert violations(now) == []
