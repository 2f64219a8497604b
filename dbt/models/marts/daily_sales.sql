-- Sales per day in the store's time zone (Brasília): orders, revenue and items; canceled apart.
with orders as (
    select
        *,
        date(created_at, '{{ var("business_timezone", "America/Sao_Paulo") }}') as sales_date
    from {{ ref('orders') }}
),

items as (
    select order_id, sum(quantity) as units
    from {{ ref('order_items') }}
    group by order_id
),

final as (
    select
        orders.sales_date,
        countif(not orders.is_canceled) as orders_count,
        coalesce(sum(if(orders.is_canceled, null, orders.order_value)), 0) as revenue,
        coalesce(sum(if(orders.is_canceled, null, items.units)), 0) as units_sold,
        countif(orders.is_canceled) as canceled_orders,
        {{ average_ticket('sum(if(orders.is_canceled, null, orders.order_value))', 'countif(not orders.is_canceled)') }}
            as average_ticket
    from orders
    left join items on items.order_id = orders.order_id
    group by orders.sales_date
)

select * from final
