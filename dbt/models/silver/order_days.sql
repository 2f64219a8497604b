-- Each order's creation time, by order id: where the read API finds an order's row of silver.orders.
-- silver.orders is partitioned by creation day, and BigQuery prunes partitions only on a constant filter
-- on created_at: a read by order_id alone opens every day of it, so its cost would grow with history.
-- This narrow table is unpartitioned and clustered by order_id: the read API first reads the few blocks
-- that can hold the id here, then the order's row from its one day (warehouse/reads.py). An order's
-- creation time never changes (silver.orders' merge bound relies on it too), so rows are only inserted
-- (meta merge_insert_only), and a merge reads only the blocks that can hold the orders it merges (meta
-- merge_ids), not the whole table. An order landed since this model's last build may not be here yet:
-- the read API then finds its day in bronze.
{{ config(
    unique_key='order_id',
    cluster_by=['order_id'],
    meta={'merge_insert_only': true, 'merge_ids': 'order_id'},
) }}

with versions as (
    {{ landed_versions('vtex_orders', typed='status') }}
),

latest as (
    {{ latest_version('versions') }}
)

-- An order whose creation time VTEX sent unreadable is kept with none (silver.orders holds it so, in its
-- partition of rows without a day): the read API then looks for it there.
select entity_id as order_id, created_at, ingested_at
from latest
