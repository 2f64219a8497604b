{#- Datasets are the layers themselves (silver, gold), behind the hub's dataset prefix, not dbt's
    default "<target dataset>_<custom schema>". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ env_var('HUB_BIGQUERY_DATASET_PREFIX', '') }}{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
