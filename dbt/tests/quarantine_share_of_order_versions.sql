-- The share of order versions refused at landing in the day before this build, when it is over
-- var quarantine_warn_share (1%): a sign VTEX changed a field's shape. Warns (gold builds from what
-- landed); the HubQuarantineRateHigh alert watches the same share hour by hour as records land.
{{ config(severity='warn') }}

with refused as (
    select count(*) as versions
    from {{ source('vtex', 'quarantine') }}
    where quarantined_at >= {{ day_before_build() }}
        and entity = 'vtex_orders'
),

landed as (
    select count(*) as versions
    from {{ source('vtex', 'vtex_orders') }}
    where ingested_at >= {{ day_before_build() }}
)

select
    refused.versions as refused,
    landed.versions as landed,
    round(safe_divide(refused.versions, refused.versions + landed.versions), 4) as refused_share
from refused
cross join landed
where refused.versions > {{ var('quarantine_warn_share', 0.01) }} * (refused.versions + landed.versions)
