-- Current orders: status and consolidated values of each order's latest version.
{{ config(unique_key='order_id') }}

with orders as (
    select * from {{ ref('stg_vtex__orders') }}
    {% if is_incremental() %}
    -- Orders with a version landed since the last build, merged over their previous row.
    where {{ landed_since_last_build() }}
    {% endif %}
)

select
    order_id,
    status,
    status = 'canceled' as is_canceled,
    created_at,
    last_change_at,
    order_value,
    items_value,
    discounts_value,
    shipping_value,
    items_count,
    customer_user_id,
    customer_document,
    shipping_state,
    shipping_city,
    ingested_at
from orders
