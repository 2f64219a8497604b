{#- Time the way BigQuery means it, written so that the emulator (DuckDB) means the same. -#}

{#- A VTEX time string as a TIMESTAMP. VTEX writes up to 7 fractional digits; BigQuery's TIMESTAMP holds
    microseconds and refuses more ("Invalid timestamp"; SAFE_CAST gives null), while the emulator takes
    them. So the digits past the sixth are cut first. -#}
{% macro vtex_timestamp(text) -%}
    timestamp(regexp_replace({{ text }}, r'(\.\d{6})\d+', r'\1'))
{%- endmacro %}

{#- Whole days from ``earlier`` to ``later`` as BigQuery's TIMESTAMP_DIFF(..., DAY) counts them: 24-hour
    periods, truncated. The emulator counts calendar-day boundaries for DAY, so the days come from the
    seconds. -#}
{% macro days_between(later, earlier) -%}
    div(timestamp_diff({{ later }}, {{ earlier }}, second), 86400)
{%- endmacro %}
