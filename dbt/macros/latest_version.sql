{#- One row per entity: its latest version, by the source's change time, then by when it landed.
    Rows landed twice (a retried append, a backfill and a hook) share an event key and collapse here. -#}
{% macro latest_version(relation) -%}
    select *
    from {{ relation }}
    qualify row_number() over (
        partition by entity_id
        order by source_updated_at desc, ingested_at desc, event_key desc
    ) = 1
{%- endmacro %}
