-- Every state change VTEX announced for an order, once.
with source as (
    select * from {{ source('vtex', 'vtex_order_events') }}
),

deduplicated as (
    select *
    from source
    qualify row_number() over (partition by event_key order by ingested_at) = 1
),

renamed as (
    select
        event_key as order_event_id,
        entity_id as order_id,
        coalesce(json_value(payload, '$.State'), json_value(payload, '$.state')) as state,
        source_updated_at as changed_at,
        ingested_at
    from deduplicated
)

select * from renamed
