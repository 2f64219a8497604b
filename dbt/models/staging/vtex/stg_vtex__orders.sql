-- Each order's latest version, money in the currency, the fields the layers above use.
with source as (
    select * from {{ source('vtex', 'vtex_orders') }}
),

latest as (
    {{ latest_version('source') }}
),

renamed as (
    select
        entity_id as order_id,
        json_value(payload, '$.status') as status,
        {{ vtex_timestamp("json_value(payload, '$.creationDate')") }} as created_at,
        source_updated_at as last_change_at,
        {{ cents_to_money("json_value(payload, '$.value')") }} as order_value,
        {{ cents_to_money(order_total('payload', 'Items')) }} as items_value,
        {{ cents_to_money(order_total('payload', 'Discounts')) }} as discounts_value,
        {{ cents_to_money(order_total('payload', 'Shipping')) }} as shipping_value,
        json_value(payload, '$.clientProfileData.userProfileId') as customer_user_id,
        json_value(payload, '$.clientProfileData.document') as customer_document,
        json_value(payload, '$.shippingData.address.state') as shipping_state,
        json_value(payload, '$.shippingData.address.city') as shipping_city,
        json_query(payload, '$.items') as items,
        coalesce(array_length(json_query_array(payload, '$.items')), 0) as items_count,
        event_key,
        ingested_at
    from latest
)

select * from renamed
