{% macro business_timezone() -%}
    {#- The time zone the marts' days are counted in: the hub's HUB_BUSINESS_TIMEZONE, as the API's "today"
        and the dealers' daily capacity count them (a var of the same name overrides it for one build). -#}
    {{ return(var("business_timezone", env_var("HUB_BUSINESS_TIMEZONE", "America/Sao_Paulo"))) }}
{%- endmacro %}
