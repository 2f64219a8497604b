-- Every state change VTEX announced for an order, once (the first landing of each event key is kept).
-- Insert-only: a state change never changes. Partitioned by the day of the change, clustered by order:
-- a build's merge reads only the days of the changes it merges, not every event ever landed.
{{ config(
    unique_key='order_event_id',
    partition_by={'field': 'changed_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['order_id'],
    meta={'merge_bound': 'changed_at', 'merge_insert_only': true},
) }}

with versions as (
    {{ landed_versions('vtex_order_events', typed='state') }}
),

first_landing as (
    select *
    from versions
    qualify row_number() over (partition by event_key order by ingested_at) = 1
)

select
    event_key as order_event_id,
    entity_id as order_id,
    state,
    source_updated_at as changed_at,
    ingested_at
from first_landing
