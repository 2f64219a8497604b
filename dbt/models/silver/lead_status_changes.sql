-- Every status each lead reached, once (a change landed twice shares its event key): the lead flow's
-- history from the portal database. Insert-only: a status change never changes. Reads only the bronze
-- rows landed since the last build; partitioned by the day of the change, clustered by lead.
{{ config(
    unique_key='event_key',
    partition_by={'field': 'changed_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['lead_id'],
    meta={'merge_bound': 'changed_at', 'merge_insert_only': true},
) }}

with versions as (
    {{ landed_versions('lead_status_changes', source_name='portal') }}
)

select
    event_key,
    lead_id,
    status,
    nullif(dealer_id, '') as dealer_id,
    changed_at,
    state,
    city,
    model,
    lead_source as source,
    ingested_at
from versions
qualify row_number() over (partition by event_key order by ingested_at, entity_id) = 1
