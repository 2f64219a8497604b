-- One row per lead, from its status history: when it was received, what routing looked at (state,
-- city, model), its channel (Zoho's Lead_Source), the furthest funnel stage it reached and its latest
-- status. No personal data. A lead's row depends on all its changes, so a build recomputes the leads
-- with a change landed since this model's last build, from all of their changes. Their ids are looked
-- up in bronze, pruned to the days landed since (silver's history is partitioned by the day of the
-- change, so a filter on when it landed would read that column whole), and written into the query as
-- constants: BigQuery documents block pruning (the history is clustered by lead) for a constant filter
-- on the clustered column, not through a subquery. Past var('leads_recomputed_by_id') changed leads, or on a silver.leads built before it
-- kept a watermark, every lead is recomputed. Built by the hourly build, like the gold tables that read it.
{{ config(
    unique_key='lead_id',
    cluster_by=['lead_id'],
    tags=['hourly'],
) }}

{%- set changed = none -%}
{%- if is_incremental() and this_has_column('ingested_at') -%}
    {%- set changed = changed_ids(
        "select distinct lead_id from " ~ source('portal', 'lead_status_changes')
        ~ " where ingested_at >= " ~ bronze_since() ~ " and lead_id is not null",
        'leads_recomputed_by_id'
    ) -%}
{%- endif %}

with history as (
    select * from {{ ref('lead_status_changes') }}
    {% if changed is not none %}
    where {{ in_constants('lead_id', changed) }}
    {% endif %}
)

select
    lead_id,
    min(if(status = 'received', changed_at, null)) as received_at,
    -- What routing looked at and the channel travel on every change landed once they were known; a lead
    -- that never reached routing has no place or model.
    max(state) as state,
    max(city) as city,
    max(model) as model,
    max(source) as source,
    max({{ funnel_rank('status') }}) as furthest_rank,
    array_agg(status order by changed_at desc, event_key desc limit 1)[offset(0)] as latest_status,
    max(changed_at) as latest_change_at,
    max(ingested_at) as ingested_at
from history
group by lead_id
