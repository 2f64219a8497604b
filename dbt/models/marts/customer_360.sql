-- One row per customer: what they bought and how often. Canceled orders count nowhere.
with customers as (
    select * from {{ ref('customers') }}
),

orders as (
    select * from {{ ref('orders') }}
    where not is_canceled
),

orders_per_customer as (
    select
        customers.customer_id,
        count(*) as orders_count,
        sum(orders.order_value) as lifetime_value,
        min(orders.created_at) as first_order_at,
        max(orders.created_at) as last_order_at
    from customers
    inner join orders on orders.customer_user_id = customers.user_id
    group by customers.customer_id
),

final as (
    select
        customers.customer_id,
        customers.user_id,
        customers.first_name,
        customers.last_name,
        customers.email,
        customers.email_is_masked,
        coalesce(per_customer.orders_count, 0) as orders_count,
        coalesce(per_customer.lifetime_value, 0) as lifetime_value,
        {{ average_ticket('per_customer.lifetime_value', 'per_customer.orders_count') }} as average_ticket,
        per_customer.first_order_at,
        per_customer.last_order_at,
        {{ purchase_frequency('per_customer.orders_count', 'per_customer.first_order_at', 'per_customer.last_order_at') }}
            as purchase_frequency,
        {{ days_between_orders('per_customer.orders_count', 'per_customer.first_order_at', 'per_customer.last_order_at') }}
            as days_between_orders
    from customers
    left join orders_per_customer as per_customer on per_customer.customer_id = customers.customer_id
)

select * from final
