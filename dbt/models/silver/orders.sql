-- Current orders: status, consolidated values and items of each order's latest version.
-- Reads only the bronze rows landed since the last build (macros/incremental.sql); a version older than
-- the one held is not merged. Partitioned by creation day, which never changes: a merge reads and
-- rewrites only the days of the orders it touches (meta merge_bound).
{{ config(
    unique_key='order_id',
    partition_by={'field': 'created_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['order_id'],
    meta={'merge_bound': 'created_at', 'merge_newer_only': true},
) }}

with versions as (
    {{ landed_versions('vtex_orders', typed='status') }}
),

latest as (
    {{ latest_version('versions') }}
),

renamed as (
    select
        entity_id as order_id,
        -- Typed at landing (warehouse/vtex_orders.py): times in UTC to the microsecond, money in cents.
        status,
        created_at,
        source_updated_at as last_change_at,
        {{ cents_to_money('value_cents') }} as order_value,
        {{ cents_to_money('items_cents') }} as items_value,
        {{ cents_to_money('discounts_cents') }} as discounts_value,
        {{ cents_to_money('shipping_cents') }} as shipping_value,
        customer_profile_id as customer_user_id,
        json_value(payload, '$.clientProfileData.document') as customer_document,
        json_value(payload, '$.shippingData.address.state') as shipping_state,
        json_value(payload, '$.shippingData.address.city') as shipping_city,
        -- The items live with their order: a new version replaces them whole (silver.order_items
        -- unnests them), so an order that lost an item needs no delete.
        array(
            select as struct
                item_index as item_index,  -- named: the emulator would call it _0
                json_value(item, '$.id') as sku_id,
                json_value(item, '$.productId') as product_id,
                json_value(item, '$.name') as item_name,
                cast(json_value(item, '$.quantity') as int64) as quantity,
                {{ cents_to_money("json_value(item, '$.price')") }} as unit_price,
                {{ cents_to_money("coalesce(json_value(item, '$.sellingPrice'), json_value(item, '$.price'))") }}
                    as selling_price
            from unnest(json_query_array(payload, '$.items')) as item with offset as item_index
            order by item_index
        ) as items,
        source_updated_at,
        ingested_at,
        event_key
    from latest
)

select
    order_id,
    status,
    status = 'canceled' as is_canceled,
    {{ is_revenue('status') }} as is_revenue,
    created_at,
    last_change_at,
    order_value,
    items_value,
    discounts_value,
    shipping_value,
    array_length(items) as items_count,
    items,
    customer_user_id,
    customer_document,
    shipping_state,
    shipping_city,
    source_updated_at,
    ingested_at,
    event_key
from renamed
