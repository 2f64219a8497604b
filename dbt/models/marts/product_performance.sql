-- Per SKU: units and revenue from revenue orders (macros/orders.sql), with its catalog state.
with items as (
    select *
    from {{ ref('order_items') }}
    where is_revenue
),

sold as (
    select
        sku_id,
        count(distinct order_id) as orders_count,
        sum(quantity) as units_sold,
        sum(line_total) as revenue,
        any_value(item_name) as item_name
    from items
    group by sku_id
),

final as (
    select
        sold.sku_id,
        skus.product_id,
        coalesce(skus.sku_name, sold.item_name) as sku_name,
        coalesce(skus.is_active, false) as is_active,
        sold.orders_count,
        sold.units_sold,
        sold.revenue
    from sold
    left join {{ ref('skus') }} as skus on skus.sku_id = sold.sku_id
)

select * from final
