-- The lead-to-sale funnel: per day received (business time zone), state and model, how many leads
-- reached each stage: received -> delivered -> accepted -> contacted -> qualified -> sold. A lead counts
-- at every stage up to the furthest it reached (a dealer that reports "sold" first also accepted it).
with history as (
    select * from {{ ref('lead_status_changes') }}
),

leads as (
    select
        lead_id,
        -- What routing looked at travels on every change; a lead that never reached routing has none.
        max(state) as state,
        max(model) as model,
        min(if(status = 'received', changed_at, null)) as received_at,
        max({{ funnel_rank('status') }}) as furthest
    from history
    group by lead_id
)

select
    date(received_at, '{{ var("business_timezone", "America/Sao_Paulo") }}') as received_date,
    state,
    model,
    count(*) as received,
    countif(furthest >= 1) as delivered,
    countif(furthest >= 2) as accepted,
    countif(furthest >= 3) as contacted,
    countif(furthest >= 4) as qualified,
    countif(furthest >= 5) as sold
from leads
where received_at is not null
group by received_date, state, model
