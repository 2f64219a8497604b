{#- The incremental filter of the silver models: rows landed since the last build, and a margin before
    it, since a landing's ingested_at is its worker's clock when the append started, and an append can
    be acknowledged after a build read the table. Rows read again merge over themselves. -#}
{% macro landed_since_last_build() -%}
    ingested_at >= (
        select timestamp_sub(
            coalesce(max(ingested_at), timestamp '1970-01-01 00:00:00+00'),
            interval {{ var('incremental_lookback_minutes', 30) }} minute
        )
        from {{ this }}
    )
{%- endmacro %}
