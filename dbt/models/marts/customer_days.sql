-- When each buyer's row of customer_360 changed, by customer_id: where the read API finds the row.
-- customer_360 is partitioned by the day of changed_at, and BigQuery prunes partitions only on a constant
-- filter: a read by customer_id alone opens every day of it, so its cost would grow with history. This
-- narrow table is unpartitioned and clustered by customer_id: the read API first reads the few blocks
-- that can hold the id here, then the row from the day of its newest change (warehouse/reads.py). A
-- row's changed_at only moves forward: one this model has not seen move yet (a build of customer_360
-- without this model) is in the days since this model's last build, where the read API looks next.
-- One row per change, only ever inserted (meta merge_insert_only), and a merge reads only the blocks that
-- can hold the buyers it merges (meta merge_ids), not the whole table.
-- An incremental build reads the days of customer_360 since this model's last build (less the lookback).
-- on_schema_change makes dbt write the rows to merge to a table first, which the merge macro reads
-- three times (how many, which ids, the merge), rather than run this query three times.
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    on_schema_change='append_new_columns',
    unique_key=['customer_id', 'changed_at'],
    cluster_by=['customer_id'],
    meta={'merge_insert_only': true, 'merge_ids': 'customer_id'},
) }}

{%- set since = watermark_since() if is_incremental() and execute else none %}

select customer_id, changed_at
from {{ ref('customer_360') }}
{%- if since is not none %}
where changed_at >= {{ since }}
{%- endif %}
