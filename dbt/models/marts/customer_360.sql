-- One row per buyer: what they bought and how often (silver.orders_per_profile, revenue orders only).
-- Every order has a buyer: orders whose VTEX profile has no customer document yet (a guest checkout,
-- or a customer the daily sync has not landed) go to a row of their own, keyed "profile:<user id>", so
-- lifetime values add up to the revenue of daily_sales. Built from customers and per-profile figures:
-- its cost follows the number of buyers, not of orders. Partitioned by the day of changed_at (when a
-- build last changed the row), so the change feed (GET /v1/customers?changed_since=) reads only recent
-- days; clustered by customer_id for the one-customer read.
--
-- Incremental: a build merges only the rows whose figures (a fingerprint of them) or RFM scores changed,
-- and those whose recency was counted a day ago or more, so a fast build rewrites the few partitions its
-- changed buyers leave and enter, where replacing the table would rewrite every partition every build
-- (BigQuery allows a partitioned table 30,000 partition writes a day). The post-hook deletes the
-- profile:<user id> rows whose customer document has landed (its own row carries the user id now).
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='customer_id',
    on_schema_change='append_new_columns',
    partition_by={'field': 'changed_at', 'data_type': 'timestamp', 'granularity': 'day'},
    cluster_by=['customer_id'],
    pre_hook=["{{ add_customer_360_fingerprints() }}"],
    post_hook=["{{ delete_buyers_with_a_document() }}"],
) }}

{#- Whether the build compares each buyer with the table's row: not on a first build or a full refresh.
    The table an earlier version replaced whole has no fingerprints yet (the pre-hook adds the column):
    they are computed from its columns, so its rows keep their changed_at, and every row is written. -#}
{%- set compared = is_incremental() -%}
{%- set stored = compared and customer_360_has_fingerprints() -%}

{#- Who the scores rank: buyers with orders, the orders without a VTEX profile aside. -#}
{%- set scored_buyer = "orders_count > 0 and user_id != " ~ unattributed_user() -%}

with customers as (
    select * from {{ ref('customers') }}
),

-- The customer document each VTEX profile's orders go to: the most recently updated of its documents.
buyers as (
    select user_id, customer_id
    from customers
    where user_id is not null
    qualify row_number() over (
        partition by user_id order by updated_at desc nulls last, customer_id
    ) = 1
),

per_buyer as (
    select
        coalesce(buyers.customer_id, concat('profile:', profiles.user_id)) as customer_id,
        profiles.user_id,
        profiles.orders_count,
        profiles.lifetime_value,
        profiles.average_ticket,
        profiles.first_order_at,
        profiles.last_order_at,
        profiles.purchase_frequency,
        profiles.days_between_orders,
        profiles.recent_orders
    from {{ ref('orders_per_profile') }} as profiles
    left join buyers on buyers.user_id = profiles.user_id
),

people as (
    select
        customer_id,
        user_id,
        first_name,
        last_name,
        email,
        email_is_masked,
        true as is_known_customer
    from customers
    union all
    select
        customer_id,
        user_id,
        cast(null as string) as first_name,
        cast(null as string) as last_name,
        cast(null as string) as email,
        cast(null as bool) as email_is_masked,
        false as is_known_customer
    from per_buyer
    where customer_id like 'profile:%'
),

final as (
    select
        people.customer_id,
        people.user_id,
        people.is_known_customer,
        people.first_name,
        people.last_name,
        people.email,
        people.email_is_masked,
        coalesce(per_buyer.orders_count, 0) as orders_count,
        coalesce(per_buyer.lifetime_value, 0) as lifetime_value,
        per_buyer.average_ticket,
        per_buyer.first_order_at,
        per_buyer.last_order_at,
        per_buyer.purchase_frequency,
        per_buyer.days_between_orders,
        coalesce(per_buyer.recent_orders, []) as recent_orders
    from people
    left join per_buyer on per_buyer.customer_id = people.customer_id
),

fingerprinted as (
    select final.*, {{ customer_fingerprint('final') }} as figures_fingerprint
    from final
),

-- When a build last changed the row: this build, where its figures differ from the row's (or there was
-- none). Not when its records landed: a record lands (by the landing worker's clock) before a build
-- makes it visible, sometimes after the feed's reader has moved past that time, and an order moving to
-- another buyer changes the old buyer's row with nothing of its own landing. So the feed's order is the
-- order in which changes became visible, and a reader that keeps the last changed_at it saw misses none.
-- The RFM scores move with time alone: they do not make a row changed.
stamped as (
    select
        fresh.*,
        {%- if compared %}
        if(
            before.figures_fingerprint = fresh.figures_fingerprint, before.changed_at, {{ build_started() }}
        ) as changed_at,
        before
    from fingerprinted as fresh
    left join (
        select
            customer_id,
            {{ 'figures_fingerprint' if stored else customer_fingerprint('kept') ~ ' as figures_fingerprint' }},
            -- none yet: every row is written, to store it
            {{ 'figures_fingerprint' if stored else 'cast(null as int64)' }} as stored_fingerprint,
            changed_at,
            figures_as_of,
            recency_score,
            frequency_score,
            monetary_score
        from {{ this }} as kept
    ) as before on before.customer_id = fresh.customer_id
        {%- else %}
        {{ build_started() }} as changed_at
    from fingerprinted as fresh
        {%- endif %}
),

-- Recency, frequency over tenure and monetary value as of this build, scored among the buyers. The row of
-- the orders with no VTEX profile at all (profile:unknown) is many buyers in one: it keeps its figures,
-- so lifetime values still add up to revenue, but takes no part in the scores (it would rank first on
-- every one and push each buyer down) and has a segment of its own.
measured as (
    select
        *,
        {{ build_started() }} as figures_as_of,
        {{ days_between(build_started(), 'last_order_at') }} as recency_days,
        {{ tenure_frequency('nullif(orders_count, 0)', 'first_order_at', build_started()) }} as tenure_frequency
    from stamped
),

scored as (
    select
        *,
        {{ rfm_score(scored_buyer, 'recency_days desc') }} as recency_score,
        {{ rfm_score(scored_buyer, 'tenure_frequency') }} as frequency_score,
        {{ rfm_score(scored_buyer, 'lifetime_value') }} as monetary_score
    from measured
)

-- Scored among every buyer above. An incremental build writes only the rows whose figures or scores
-- changed, and those whose recency and tenure were counted a day ago or more.
select
    * {%- if compared %} except (before){% endif %},
    if(
        user_id = {{ unattributed_user() }}, 'unattributed', {{ rfm_segment('recency_score', 'frequency_score') }}
    ) as rfm_segment
from scored
{%- if compared %}
where coalesce(before.stored_fingerprint != figures_fingerprint, true)
    or to_json_string(struct(before.recency_score, before.frequency_score, before.monetary_score))
        != to_json_string(struct(recency_score, frequency_score, monetary_score))
    or before.figures_as_of <= timestamp_sub({{ build_started() }}, interval 1 day)
{%- endif %}
