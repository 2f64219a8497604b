-- Each customer's latest Master Data CL document; VTEX's masked relay e-mails are flagged.
with source as (
    select * from {{ source('vtex', 'vtex_customers') }}
),

latest as (
    {{ latest_version('source') }}
),

renamed as (
    select
        entity_id as customer_id,
        json_value(payload, '$.userId') as user_id,
        json_value(payload, '$.email') as email,
        -- Same rule as the ingestion check (warehouse/vtex_customers.py): the address is VTEX's relay.
        coalesce(ends_with(lower(json_value(payload, '$.email')), '@ct.vtex.com.br'), false) as email_is_masked,
        json_value(payload, '$.firstName') as first_name,
        json_value(payload, '$.lastName') as last_name,
        json_value(payload, '$.document') as document,
        {{ vtex_timestamp("json_value(payload, '$.createdIn')") }} as created_at,
        source_updated_at as updated_at,
        ingested_at
    from latest
)

select * from renamed
