-- Each order's current facts by the buyer's VTEX profile, which orders_per_profile reads a profile's
-- orders from: seven narrow columns, where reading them from silver.orders (clustered by order, for the
-- read API's point reads) cost the same columns twice per build. Incremental: the orders with a version
-- landed since this model's last build are looked up in bronze (pruned to those days) and written in as
-- constants, which prune silver.orders' clustered blocks; past var('orders_recomputed_by_id') of them,
-- or on a full refresh, every order is read. Partitioned by creation day, which never changes: a merge
-- reads and rewrites only the days of the orders it merges (meta merge_bound). Clustered by profile,
-- which prunes a profile's read only where a day's partition spans many blocks (a large store): below
-- that, a read by profile reads the table whole, still once and narrow.
{{ config(
    unique_key='order_id',
    partition_by={'field': 'created_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['user_id'],
    meta={'merge_bound': 'created_at'},
) }}

{%- set changed = changed_ids(
    "select distinct entity_id from " ~ source('vtex', 'vtex_orders')
    ~ " where ingested_at >= " ~ bronze_since() ~ " and status is not null",
    'orders_recomputed_by_id'
) %}

select
    coalesce(customer_user_id, {{ unattributed_user() }}) as user_id,
    order_id,
    status,
    is_revenue,
    order_value,
    created_at,
    ingested_at
from {{ ref('orders') }}
{% if changed is not none %}
where {{ in_constants('order_id', changed) }}
{% endif %}
