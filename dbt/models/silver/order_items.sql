-- One row per item of each current order.
{{ config(unique_key='order_item_id') }}

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
