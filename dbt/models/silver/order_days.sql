-- Each order's creation time, by order id: where the read API finds an order's row of silver.orders.
-- silver.orders is partitioned by creation day, and BigQuery prunes partitions only on a constant filter
-- on created_at: a read by order_id alone opens every day of it, so its cost would grow with history.
-- This narrow table is unpartitioned and clustered by order_id: the read API first reads the few blocks
-- that can hold the id here, then the order's row from its one day (warehouse/reads.py). An order's
-- creation time never changes, so rows are only inserted (meta merge_insert_only), and a merge reads
-- only the blocks that can hold the orders it merges (meta merge_ids), not the whole table.
{{ config(
    unique_key='order_id',
    cluster_by=['order_id'],
    meta={'merge_insert_only': true, 'merge_ids': 'order_id'},
) }}

with versions as (
    {{ landed_versions('vtex_orders', typed='status') }}
)

select
    entity_id as order_id,
    min(created_at) as created_at,
    min(ingested_at) as ingested_at  -- its first landing: what a full build finds too
from versions
where created_at is not null
group by entity_id
