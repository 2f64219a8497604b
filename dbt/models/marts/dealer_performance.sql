-- Per dealer and day (the day each lead reached it, in the business time zone): leads delivered,
-- how many it took (accepted or a later status) and how many within its SLA, the median and p90
-- minutes from delivery to taking it (none below zero), how many were withdrawn from it after the SLA
-- passed (re-routed away), how many it reported sold, and the deals won from them in Zoho with their
-- amount. From silver's deliveries, status history and deals.
-- A won deal belongs to the dealer that holds its lead (the lead's delivery that has not ended). A won
-- deal without one (no lead, or a lead the hub never delivered) is unlinked: counted in a row of its
-- own, dealer_id 'unlinked' on the day it was won, so the deals won add up to every deal won.
-- Partitioned by day and clustered by dealer: GET /v1/dealers/{id}/performance reads one dealer's range.
{{ config(
    partition_by={'field': 'day', 'data_type': 'date', 'granularity': 'day'},
    cluster_by=['dealer_id'],
) }}
with deliveries as (
    select *
    from {{ ref('lead_deliveries') }}
    where delivered_at is not null
),

-- The statuses each dealer reported about its delivery of the lead. A lead sent back to a dealer is
-- a delivery of its own: a change names its delivery in its key (when that delivery was claimed), so
-- the first delivery's acceptance does not count as taking the second at once. A change landed before
-- changes named their delivery counts for the dealer's delivery of the lead, as it did then.
marked as (
    select lead_id, dealer_id, status, changed_at, {{ delivery_claimed_at('event_key') }} as claim
    from {{ ref('lead_status_changes') }}
    where dealer_id is not null
),

-- The claim of each delivery: its row's, or, for a delivery that ended (withdrawn, released) before
-- ended deliveries landed their claim, the newest claim its dealer's changes name up to its delivery
-- (its own "delivered" names it).
claims as (
    select
        deliveries.lead_id,
        deliveries.dealer_id,
        coalesce(any_value(deliveries.claimed_at), max(marked.claim)) as claimed_at
    from deliveries
    left join marked
        on marked.lead_id = deliveries.lead_id
        and marked.dealer_id = deliveries.dealer_id
        and marked.claim <= deliveries.delivered_at
    group by deliveries.lead_id, deliveries.dealer_id
),

reported as (
    select marked.lead_id, marked.dealer_id, marked.status, marked.changed_at
    from marked
    inner join claims using (lead_id, dealer_id)
    where coalesce(marked.claim = claims.claimed_at, true)
),

-- When each dealer took each lead: its first status that means it did.
taken as (
    select lead_id, dealer_id, min(changed_at) as taken_at
    from reported
    where {{ took_the_lead('status') }}
    group by lead_id, dealer_id
),

sold as (
    select distinct lead_id, dealer_id
    from reported
    where status = 'sold'
),

-- When each deal was first won (a deal won before any move was seen: its last change).
won as (
    select
        deals.deal_id,
        deals.lead_id,
        deals.amount,
        coalesce(moves.won_at, deals.modified_at) as won_at
    from {{ ref('deals') }} as deals
    left join (
        select deal_id, min(changed_at) as won_at
        from {{ ref('deal_stage_changes') }}
        where stage = 'Closed Won'
        group by deal_id
    ) as moves using (deal_id)
    where deals.is_won
),

holders as (
    select lead_id, dealer_id
    from {{ ref('lead_deliveries') }}
    where status = 'delivered'
),

won_per_lead as (
    select won.lead_id, count(*) as deals_won, sum(won.amount) as won_amount
    from won
    inner join holders using (lead_id)
    group by won.lead_id
),

per_delivery as (
    select
        deliveries.dealer_id,
        date(deliveries.delivered_at, '{{ business_timezone() }}') as day,
        deliveries.status = 'withdrawn' as withdrawn,  -- the SLA passed (a release is support's doing)
        taken.taken_at is not null as was_taken,
        deliveries.accept_by is not null as has_sla,
        taken.taken_at is not null
            and deliveries.accept_by is not null
            and taken.taken_at <= deliveries.accept_by as taken_within_sla,
        -- A dealer's clock may put its report before the delivery: that is taking it at once.
        timestamp_diff(
            greatest(taken.taken_at, deliveries.delivered_at), deliveries.delivered_at, microsecond
        ) / 60000000.0 as minutes_to_take,
        sold.lead_id is not null as was_sold,
        if(deliveries.status = 'delivered', won_per_lead.deals_won, null) as deals_won,
        if(deliveries.status = 'delivered', won_per_lead.won_amount, null) as won_amount
    from deliveries
    left join taken using (lead_id, dealer_id)
    left join sold using (lead_id, dealer_id)
    left join won_per_lead using (lead_id)
),

per_day as (
    select
        dealer_id,
        day,
        count(*) as leads_received,
        countif(was_taken) as leads_accepted,
        countif(has_sla) as leads_with_sla,
        countif(taken_within_sla) as accepted_within_sla,
        array_agg(minutes_to_take ignore nulls order by minutes_to_take) as minutes,
        countif(withdrawn) as rerouted_away,
        countif(was_sold) as leads_sold,
        coalesce(sum(deals_won), 0) as deals_won,
        coalesce(sum(won_amount), 0) as won_amount
    from per_delivery
    group by dealer_id, day
),

unlinked as (
    select
        'unlinked' as dealer_id,
        date(won.won_at, '{{ business_timezone() }}') as day,
        count(*) as deals_won,
        coalesce(sum(won.amount), 0) as won_amount
    from won
    left join holders using (lead_id)
    where holders.dealer_id is null
    group by day
)

select
    dealer_id,
    day,
    leads_received,
    leads_accepted,
    leads_with_sla,
    accepted_within_sla,
    {{ percentile('minutes', 0.5) }} as median_minutes_to_accept,
    {{ percentile('minutes', 0.9) }} as p90_minutes_to_accept,
    rerouted_away,
    leads_sold,
    round(safe_divide(leads_sold, leads_received), 4) as conversion,
    deals_won,
    won_amount,
    round(safe_divide(deals_won, leads_received), 4) as deal_conversion
from per_day

union all

select
    dealer_id,
    day,
    0 as leads_received,
    0 as leads_accepted,
    0 as leads_with_sla,
    0 as accepted_within_sla,
    cast(null as float64) as median_minutes_to_accept,
    cast(null as float64) as p90_minutes_to_accept,
    0 as rerouted_away,
    0 as leads_sold,
    cast(null as float64) as conversion,
    deals_won,
    won_amount,
    cast(null as float64) as deal_conversion
from unlinked
