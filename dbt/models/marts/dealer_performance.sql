-- Per dealer and day (the day each lead reached it, in the business time zone): leads delivered,
-- how many it took (accepted or a later status) and how many within its SLA, the median and p90
-- minutes from delivery to taking it (none below zero), how many were withdrawn from it after the SLA
-- passed (re-routed away), and how many it reported sold. From silver's deliveries and status history.
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

-- When each dealer took each lead: its first status that means it did.
taken as (
    select lead_id, dealer_id, min(changed_at) as taken_at
    from {{ ref('lead_status_changes') }}
    where dealer_id is not null and {{ took_the_lead('status') }}
    group by lead_id, dealer_id
),

sold as (
    select distinct lead_id, dealer_id
    from {{ ref('lead_status_changes') }}
    where dealer_id is not null and status = 'sold'
),

per_delivery as (
    select
        deliveries.dealer_id,
        date(deliveries.delivered_at, '{{ var("business_timezone", "America/Sao_Paulo") }}') as day,
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
        sold.lead_id is not null as was_sold
    from deliveries
    left join taken using (lead_id, dealer_id)
    left join sold using (lead_id, dealer_id)
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
        countif(was_sold) as leads_sold
    from per_delivery
    group by dealer_id, day
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
    round(safe_divide(leads_sold, leads_received), 4) as conversion
from per_day
