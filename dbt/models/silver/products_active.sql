-- The SKUs a shopper can buy now: active in the catalog, still listed, and priced.
{{ config(materialized='view') }}

select
    sku_id,
    product_id,
    sku_name,
    ref_id,
    list_price,
    base_price
from {{ ref('skus') }}
where is_active and base_price is not null
