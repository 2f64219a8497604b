-- The lead-to-sale funnel: per day received (business time zone), state, model and source, how many
-- leads reached each stage: received -> delivered -> accepted -> contacted -> qualified -> sold. A lead
-- counts at every stage up to the furthest it reached (a dealer that reports "sold" first also accepted
-- it). From silver.leads.
select
    date(received_at, '{{ business_timezone() }}') as received_date,
    state,
    model,
    source,
    count(*) as received,
    countif(furthest_rank >= 1) as delivered,
    countif(furthest_rank >= 2) as accepted,
    countif(furthest_rank >= 3) as contacted,
    countif(furthest_rank >= 4) as qualified,
    countif(furthest_rank >= 5) as sold
from {{ ref('leads') }}
where received_at is not null
group by received_date, state, model, source
