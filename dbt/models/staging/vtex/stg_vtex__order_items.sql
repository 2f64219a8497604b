-- The items of each order's latest version, one row each.
with orders as (
    select order_id, items, ingested_at from {{ ref('stg_vtex__orders') }}
),

items as (
    select
        orders.order_id,
        offset as item_index,
        item,
        orders.ingested_at
    from orders, unnest(json_query_array(orders.items)) as item with offset
),

renamed as (
    select
        concat(order_id, '#', cast(item_index as string)) as order_item_id,
        order_id,
        item_index,
        json_value(item, '$.id') as sku_id,
        json_value(item, '$.productId') as product_id,
        json_value(item, '$.name') as item_name,
        cast(json_value(item, '$.quantity') as int64) as quantity,
        {{ cents_to_money("json_value(item, '$.price')") }} as unit_price,
        {{ cents_to_money("coalesce(json_value(item, '$.sellingPrice'), json_value(item, '$.price'))") }}
            as selling_price,
        ingested_at
    from items
)

select
    *,
    selling_price * quantity as line_total
from renamed
