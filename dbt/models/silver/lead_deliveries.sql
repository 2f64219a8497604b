-- Each delivery of a lead to a dealer in its latest state: claimed, delivered (with the dealer's SLA
-- deadline, accept_by), the newest status the dealer reported, withdrawn after the SLA passed, or
-- released (a claim the dealer refused, or support assigned the lead elsewhere). A lead is at one
-- dealer at a time: every delivery but its latest has ended (withdrawn or released).
-- Reads only the bronze rows landed since the last build; an older version never overwrites a newer one.
{{ config(
    unique_key='delivery_id',
    cluster_by=['dealer_id', 'lead_id'],
    meta={'merge_newer_only': true},
) }}

with versions as (
    {{ landed_versions('lead_deliveries', source_name='portal') }}
),

latest as (
    {{ latest_version('versions') }}
)

select
    entity_id as delivery_id,
    lead_id,
    dealer_id,
    status,
    routing_reason,
    claimed_at,
    delivered_at,
    accept_by,
    dealer_status,
    dealer_status_at,
    withdrawn_at,
    withdrawal_reason,
    withdrawal_at_crm,
    released_at,
    source_updated_at,
    ingested_at,
    event_key
from latest
