-- Every SKU the catalog sync has seen, in its current state (inactive and removed ones included).
-- Reads only the bronze rows landed since the last build; a version older than the one held is not merged.
{{ config(
    unique_key='sku_id',
    meta={'merge_newer_only': true},
) }}

with versions as (
    {{ landed_versions('vtex_skus') }}
),

latest as (
    {{ latest_version('versions') }}
)

select
    entity_id as sku_id,
    json_value(payload, '$.sku.ProductId') as product_id,
    json_value(payload, '$.sku.Name') as sku_name,
    json_value(payload, '$.sku.RefId') as ref_id,
    -- A SKU VTEX dropped is kept, marked removed.
    coalesce(cast(json_value(payload, '$.sku.IsActive') as bool), false)
        and json_type(json_query(payload, '$.sku')) != 'null' as is_active,
    json_type(json_query(payload, '$.sku')) = 'null' as is_removed,
    cast(json_value(payload, '$.price.listPrice') as numeric) as list_price,
    cast(json_value(payload, '$.price.basePrice') as numeric) as base_price,
    source_updated_at,
    ingested_at,
    event_key
from latest
