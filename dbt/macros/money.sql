{#- VTEX money is integer cents; the warehouse keeps it as NUMERIC in the currency. -#}
{% macro cents_to_money(expression) -%}
    cast({{ expression }} as numeric) / 100
{%- endmacro %}
