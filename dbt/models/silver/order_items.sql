-- One row per item of each current order: the items silver.orders keeps with their order.
{{ config(materialized='view') }}

select
    concat(orders.order_id, '#', cast(item.item_index as string)) as order_item_id,
    orders.order_id,
    item.item_index,
    item.sku_id,
    item.product_id,
    item.item_name,
    item.quantity,
    item.unit_price,
    item.selling_price,
    item.selling_price * item.quantity as line_total,
    orders.is_revenue,
    orders.created_at as order_created_at
from {{ ref('orders') }} as orders
cross join unnest(orders.items) as item
