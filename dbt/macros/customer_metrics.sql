{#- The business rules of the customer view, one home each (and unit-tested in marts/_marts__models.yml). -#}

{#- Money per order; null when there are no orders. -#}
{% macro average_ticket(money, orders) -%}
    round(safe_divide({{ money }}, {{ orders }}), 2)
{%- endmacro %}

{#- Orders per 30 days from the first order to the last, over at least 30 days (a single order: 1).
    Days are whole 24-hour periods, as BigQuery counts them (macros/time.sql). -#}
{% macro purchase_frequency(orders, first_at, last_at) -%}
    round(
        safe_divide(
            {{ orders }} * 30,
            greatest({{ days_between(last_at, first_at) }}, 30)
        ),
        4
    )
{%- endmacro %}

{#- Mean days between consecutive orders; null with fewer than two orders. -#}
{% macro days_between_orders(orders, first_at, last_at) -%}
    round(safe_divide({{ days_between(last_at, first_at) }}, {{ orders }} - 1), 1)
{%- endmacro %}
