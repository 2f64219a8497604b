-- Every state change VTEX announced for an order, once (the first landing of each event key is kept).
{{ config(unique_key='order_event_id', meta={'merge_insert_only': true}) }}

with versions as (
    {{ landed_versions('vtex_order_events', typed='state') }}
),

first_landing as (
    select *
    from versions
    qualify row_number() over (partition by event_key order by ingested_at) = 1
)

select
    event_key as order_event_id,
    entity_id as order_id,
    state,
    source_updated_at as changed_at,
    ingested_at
from first_landing
