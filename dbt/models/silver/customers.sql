-- Customers (Master Data CL) in their current state; a masked e-mail is VTEX's relay, not the shopper's.
-- Reads only the bronze rows landed since the last build; a version older than the one held is not merged.
-- Partitioned by the document's creation day, which never changes (meta merge_bound), as orders.
{{ config(
    unique_key='customer_id',
    partition_by={'field': 'created_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['customer_id'],
    meta={'merge_bound': 'created_at', 'merge_newer_only': true},
) }}

with versions as (
    {{ landed_versions('vtex_customers') }}
),

latest as (
    {{ latest_version('versions') }}
),

renamed as (
    select
        entity_id as customer_id,
        user_id,  -- typed at landing (warehouse/vtex_customers.py), as created_at
        json_value(payload, '$.email') as email,
        -- Same rule as the ingestion check (warehouse/vtex_customers.py): the address is VTEX's relay,
        -- whatever spaces or line breaks stand around it.
        coalesce(ends_with(lower(trim(json_value(payload, '$.email'), ' \t\r\n')), '@ct.vtex.com.br'), false)
            as email_is_masked,
        json_value(payload, '$.firstName') as first_name,
        json_value(payload, '$.lastName') as last_name,
        json_value(payload, '$.document') as document,
        created_at,
        source_updated_at,
        ingested_at,
        event_key
    from latest
)

select
    customer_id,
    user_id,
    case when email_is_masked then null else email end as email,
    email_is_masked,
    first_name,
    last_name,
    document,
    created_at,
    source_updated_at as updated_at,
    source_updated_at,
    ingested_at,
    event_key
from renamed
