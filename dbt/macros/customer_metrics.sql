{#- The business rules of the customer view, one home each (and unit-tested in marts/_marts__models.yml). -#}

{#- Money per order; null when there are no orders. -#}
{% macro average_ticket(money, orders) -%}
    round(safe_divide({{ money }}, {{ orders }}), 2)
{%- endmacro %}

{#- Orders per 30 days from the first order to the last, over at least 30 days (a single order: 1). -#}
{% macro purchase_frequency(orders, first_at, last_at) -%}
    round(
        safe_divide(
            {{ orders }} * 30,
            greatest(timestamp_diff({{ last_at }}, {{ first_at }}, day), 30)
        ),
        4
    )
{%- endmacro %}

{#- Mean days between consecutive orders; null with fewer than two orders. -#}
{% macro days_between_orders(orders, first_at, last_at) -%}
    round(safe_divide(timestamp_diff({{ last_at }}, {{ first_at }}, day), {{ orders }} - 1), 1)
{%- endmacro %}
