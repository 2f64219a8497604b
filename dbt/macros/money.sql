{#- VTEX money is integer cents; the warehouse keeps it as NUMERIC in the currency. -#}
{% macro cents_to_money(expression) -%}
    cast({{ expression }} as numeric) / 100
{%- endmacro %}

{#- The value of one entry of an order's totals array (Items, Discounts, Shipping, Tax), in cents. -#}
{% macro order_total(payload, total_id) -%}
    (
        select sum(cast(json_value(total, '$.value') as int64))
        from unnest(json_query_array({{ payload }}, '$.totals')) as total
        where json_value(total, '$.id') = '{{ total_id }}'
    )
{%- endmacro %}
