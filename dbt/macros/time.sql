{#- Time the way BigQuery means it, written so that the emulator (DuckDB) means the same. Times come
    typed from bronze (the landing parses them, cut to microseconds): no SQL parses a time string. -#}

{#- Whole days from ``earlier`` to ``later`` as BigQuery's TIMESTAMP_DIFF(..., DAY) counts them: 24-hour
    periods, truncated. The emulator counts calendar-day boundaries for DAY, so the days come from the
    seconds. -#}
{% macro days_between(later, earlier) -%}
    div(timestamp_diff({{ later }}, {{ earlier }}, second), 86400)
{%- endmacro %}
