-- Every SKU the catalog sync has seen, in its current state (inactive and removed ones included).
{{ config(unique_key='sku_id') }}

select
    sku_id,
    product_id,
    sku_name,
    ref_id,
    is_active and not is_removed as is_active,
    is_removed,
    list_price,
    base_price,
    ingested_at
from {{ ref('stg_vtex__skus') }}
{% if is_incremental() %}
where {{ landed_since_last_build() }}
{% endif %}
