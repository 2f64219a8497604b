-- Per VTEX profile (the user id orders carry): revenue orders, lifetime value, average ticket,
-- frequency, first and last order (revenue orders only, macros/orders.sql), and the latest orders of
-- any status. Incremental: a build recomputes only the profiles with an order version landed since this
-- model's last build, from all of their orders (profile_orders). Their ids are looked up in bronze
-- (pruned to those days) and written in as constants, which prune profile_orders' clustered blocks where
-- its day partitions are large enough to hold several; past var('profiles_recomputed_by_id') of them,
-- every profile is. A profile an order left (its user id changed) is not recomputed: known, see README.
{{ config(unique_key='user_id', cluster_by=['user_id']) }}

{%- set changed = changed_ids(
    "select distinct coalesce(customer_profile_id, " ~ unattributed_user() ~ ") from " ~ source('vtex', 'vtex_orders')
    ~ " where ingested_at >= " ~ bronze_since() ~ " and status is not null",
    'profiles_recomputed_by_id'
) %}

with orders as (
    select user_id, order_id, status, is_revenue, order_value, created_at, ingested_at
    from {{ ref('profile_orders') }}
    {% if changed is not none %}
    where {{ in_constants('user_id', changed) }}
    {% endif %}
),

per_profile as (
    select
        user_id,
        countif(is_revenue) as orders_count,
        coalesce(sum(if(is_revenue, order_value, null)), 0) as lifetime_value,
        min(if(is_revenue, created_at, null)) as first_order_at,
        max(if(is_revenue, created_at, null)) as last_order_at,
        array_agg(
            struct(order_id as order_id, status as status, created_at as created_at, order_value as order_value)
            order by created_at desc, order_id limit {{ var('recent_orders', 10) }}
        ) as recent_orders,
        max(ingested_at) as ingested_at
    from orders
    group by user_id
)

select
    user_id,
    orders_count,
    lifetime_value,
    {{ average_ticket('lifetime_value', 'nullif(orders_count, 0)') }} as average_ticket,
    first_order_at,
    last_order_at,
    {{ purchase_frequency('nullif(orders_count, 0)', 'first_order_at', 'last_order_at') }} as purchase_frequency,
    {{ days_between_orders('orders_count', 'first_order_at', 'last_order_at') }} as days_between_orders,
    recent_orders,
    ingested_at
from per_profile
