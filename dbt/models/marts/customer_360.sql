-- One row per buyer: what they bought and how often. Only revenue orders count (macros/orders.sql).
-- Every order has a buyer: orders whose VTEX profile has no customer document yet (a guest checkout,
-- or a customer the daily sync has not landed) go to a row of their own, keyed "profile:<user id>", so
-- lifetime values add up to the revenue of daily_sales.
{{ config(cluster_by=['customer_id']) }}

with customers as (
    select * from {{ ref('customers') }}
),

-- The customer document each VTEX profile's orders go to: the most recently updated of its documents.
buyers as (
    select user_id, customer_id
    from customers
    where user_id is not null
    qualify row_number() over (
        partition by user_id order by updated_at desc nulls last, customer_id
    ) = 1
),

orders as (
    select
        coalesce(buyers.customer_id, concat('profile:', coalesce(orders.customer_user_id, 'unknown'))) as customer_id,
        orders.customer_user_id,
        orders.order_id,
        orders.status,
        orders.is_revenue,
        orders.order_value,
        orders.created_at
    from {{ ref('orders') }} as orders
    left join buyers on buyers.user_id = orders.customer_user_id
),

per_buyer as (
    select
        customer_id,
        any_value(customer_user_id) as user_id,
        countif(is_revenue) as orders_count,
        sum(if(is_revenue, order_value, null)) as lifetime_value,
        min(if(is_revenue, created_at, null)) as first_order_at,
        max(if(is_revenue, created_at, null)) as last_order_at,
        -- The latest orders whatever their status, so the read API answers from this one row.
        array_agg(
            struct(order_id as order_id, status as status, created_at as created_at, order_value as order_value)
            order by created_at desc, order_id limit {{ var('recent_orders', 10) }}
        ) as recent_orders
    from orders
    group by customer_id
),

people as (
    select
        customer_id,
        user_id,
        first_name,
        last_name,
        email,
        email_is_masked,
        true as is_known_customer
    from customers
    union all
    select
        customer_id,
        user_id,
        cast(null as string) as first_name,
        cast(null as string) as last_name,
        cast(null as string) as email,
        cast(null as bool) as email_is_masked,
        false as is_known_customer
    from per_buyer
    where customer_id like 'profile:%'
),

final as (
    select
        people.customer_id,
        people.user_id,
        people.is_known_customer,
        people.first_name,
        people.last_name,
        people.email,
        people.email_is_masked,
        coalesce(per_buyer.orders_count, 0) as orders_count,
        coalesce(per_buyer.lifetime_value, 0) as lifetime_value,
        {{ average_ticket('per_buyer.lifetime_value', 'nullif(per_buyer.orders_count, 0)') }} as average_ticket,
        per_buyer.first_order_at,
        per_buyer.last_order_at,
        {{ purchase_frequency('nullif(per_buyer.orders_count, 0)', 'per_buyer.first_order_at', 'per_buyer.last_order_at') }}
            as purchase_frequency,
        {{ days_between_orders('per_buyer.orders_count', 'per_buyer.first_order_at', 'per_buyer.last_order_at') }}
            as days_between_orders,
        coalesce(per_buyer.recent_orders, []) as recent_orders
    from people
    left join per_buyer on per_buyer.customer_id = people.customer_id
)

select * from final
