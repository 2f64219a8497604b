-- Sales per day in the store's time zone (HUB_BUSINESS_TIMEZONE, Brasília by default): revenue orders, revenue and units; canceled apart.
with orders as (
    select
        *,
        date(created_at, '{{ business_timezone() }}') as sales_date,
        (select sum(item.quantity) from unnest(items) as item) as units
    from {{ ref('orders') }}
),

final as (
    select
        sales_date,
        countif(is_revenue) as orders_count,
        coalesce(sum(if(is_revenue, order_value, null)), 0) as revenue,
        coalesce(sum(if(is_revenue, units, null)), 0) as units_sold,
        countif(is_canceled) as canceled_orders,
        countif(not is_revenue and not is_canceled) as other_orders,
        {{ average_ticket('sum(if(is_revenue, order_value, null))', 'countif(is_revenue)') }} as average_ticket
    from orders
    group by sales_date
)

select * from final
