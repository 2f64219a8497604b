-- Each deal in its latest state, from the central database (OpportunitySyncWorkflow replicates Zoho's
-- deals there): stage, amount, owner, and the lead it was converted from (null: none found, an unlinked
-- deal). No deal name, account or contact. Reads only the bronze rows landed since the last build; an
-- older state never overwrites a newer one.
{{ config(
    unique_key='deal_id',
    cluster_by=['deal_id'],
    meta={'merge_newer_only': true},
) }}

with versions as (
    {{ landed_versions('deals', source_name='portal') }}
),

latest as (
    {{ latest_version('versions') }}
)

select
    deal_id,
    lead_id,
    stage,
    {{ cents_to_money('amount_cents') }} as amount,
    closing_date,
    probability,
    owner,
    stage = 'Closed Won' as is_won,
    stage = 'Closed Lost' as is_lost,
    modified_at,
    source_updated_at,
    ingested_at,
    event_key
from latest
