-- Customers (Master Data CL) in their current state; a masked e-mail is VTEX's relay, not the shopper's.
{{ config(unique_key='customer_id') }}

select
    customer_id,
    user_id,
    case when email_is_masked then null else email end as email,
    email_is_masked,
    first_name,
    last_name,
    document,
    created_at,
    updated_at,
    ingested_at
from {{ ref('stg_vtex__customers') }}
{% if is_incremental() %}
where {{ landed_since_last_build() }}
{% endif %}
