-- One row per item of each current order.
-- A merge only adds and updates rows: when an order's latest version has fewer items than an earlier
-- one, the post-hook deletes the items past its new count.
-- depends_on: {{ ref('orders') }}
{{ config(
    unique_key='order_item_id',
    post_hook="
        delete from {{ this }}
        where order_item_id in (
            select items.order_item_id
            from {{ this }} as items
            inner join {{ ref('orders') }} as orders on orders.order_id = items.order_id
            where items.item_index >= orders.items_count
        )
    ",
) }}

select
    order_item_id,
    order_id,
    item_index,
    sku_id,
    product_id,
    item_name,
    quantity,
    unit_price,
    selling_price,
    line_total,
    ingested_at
from {{ ref('stg_vtex__order_items') }}
{% if is_incremental() %}
where {{ landed_since_last_build() }}
{% endif %}
