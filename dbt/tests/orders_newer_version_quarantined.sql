-- Orders whose newest version VTEX sent was refused at landing, so silver still shows an older one
-- (its status, its value). Event keys are "<order id>@<change time>", so they sort as the versions do.
-- Warns: gold builds with the version silver has; support sees which orders lag and why.
{{ config(severity='warn') }}

select
    orders.order_id,
    orders.status as status_in_silver,
    orders.event_key as version_in_silver,
    quarantine.event_key as newer_version_refused,
    quarantine.reason
from {{ source('vtex', 'quarantine') }} as quarantine
inner join {{ ref('orders') }} as orders on orders.order_id = quarantine.entity_id
where quarantine.quarantined_at >= {{ bronze_begin() }}
    and quarantine.entity = 'vtex_orders'
    and quarantine.event_key > orders.event_key
