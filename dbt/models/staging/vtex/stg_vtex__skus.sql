-- Each SKU's latest content from the catalog sync; a SKU VTEX dropped is marked removed.
with source as (
    select * from {{ source('vtex', 'vtex_skus') }}
),

latest as (
    {{ latest_version('source') }}
),

renamed as (
    select
        entity_id as sku_id,
        json_value(payload, '$.sku.ProductId') as product_id,
        json_value(payload, '$.sku.Name') as sku_name,
        json_value(payload, '$.sku.RefId') as ref_id,
        coalesce(cast(json_value(payload, '$.sku.IsActive') as bool), false) as is_active,
        json_type(json_query(payload, '$.sku')) = 'null' as is_removed,
        cast(json_value(payload, '$.price.listPrice') as numeric) as list_price,
        cast(json_value(payload, '$.price.basePrice') as numeric) as base_price,
        ingested_at
    from latest
)

select * from renamed
