-- Every stage each deal went through, once (a move landed twice shares its event key), by Zoho's
-- Modified_Time. Insert-only: a move never changes. Reads only the bronze rows landed since the last
-- build; partitioned by the day of the move, clustered by deal.
{{ config(
    unique_key='event_key',
    partition_by={'field': 'changed_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['deal_id'],
    meta={'merge_bound': 'changed_at', 'merge_insert_only': true},
) }}

with versions as (
    {{ landed_versions('deal_stage_changes', source_name='portal') }}
)

select
    event_key,
    deal_id,
    stage,
    changed_at,
    ingested_at
from versions
qualify row_number() over (partition by event_key order by ingested_at, entity_id) = 1
