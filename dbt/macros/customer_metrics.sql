{#- The business rules of the customer view, one home each (and unit-tested in marts/_marts__models.yml). -#}

{#- Money per order; null when there are no orders. -#}
{% macro average_ticket(money, orders) -%}
    round(safe_divide({{ money }}, {{ orders }}), 2)
{%- endmacro %}

{#- Orders per 30 days from the first order to the last, over at least 30 days (a single order: 1).
    Days are whole 24-hour periods, as BigQuery counts them (macros/time.sql). -#}
{% macro purchase_frequency(orders, first_at, last_at) -%}
    round(
        safe_divide(
            {{ orders }} * 30,
            greatest({{ days_between(last_at, first_at) }}, 30)
        ),
        4
    )
{%- endmacro %}

{#- Mean days between consecutive orders; null with fewer than two orders. -#}
{% macro days_between_orders(orders, first_at, last_at) -%}
    round(safe_divide({{ days_between(last_at, first_at) }}, {{ orders }} - 1), 1)
{%- endmacro %}

{#- The user id the orders that carry no VTEX profile at all are counted under (profile:unknown in
    customer_360): many buyers in one row, which the RFM scores leave out. -#}
{% macro unattributed_user() -%}
    'unknown'
{%- endmacro %}

{#- The moment the build started, as a literal: recency and tenure are counted up to it, so every row of
    one build shares it (customer_360.figures_as_of). -#}
{% macro build_started() -%}
    timestamp '{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}+00'
{%- endmacro %}

{#- Orders per 30 days over the buyer's tenure: from the first order to the build, over at least 30
    days. A buyer of two orders long ago scores low, unlike first-to-last frequency. -#}
{% macro tenure_frequency(orders, first_at, as_of) -%}
    round(safe_divide({{ orders }} * 30, greatest({{ days_between(as_of, first_at) }}, 30)), 4)
{%- endmacro %}

{#- An RFM score from 1 to 5: where the buyer stands among the buyers with orders (its percent rank,
    in fifths; ties share a score). ``order`` puts the best last: recency_days desc, the others asc.
    Null for a buyer without orders. -#}
{% macro rfm_score(has_orders, order) -%}
    if(
        {{ has_orders }},
        least(5, 1 + cast(floor(percent_rank() over (partition by {{ has_orders }} order by {{ order }}) * 5) as int64)),
        null
    )
{%- endmacro %}

{#- The named segment of a recency and a frequency score (README, "Customer 360 and RFM"):
    champions R>=4 F>=4; loyal R>=3 F>=3; new R>=4 (F<=2); at_risk R<=2 F>=3; hibernating R<=2 F<=2;
    needs_attention the rest (R=3, F<=2); prospect without orders. -#}
{% macro rfm_segment(r, f) -%}
    case
        when {{ r }} is null then 'prospect'
        when {{ r }} >= 4 and {{ f }} >= 4 then 'champions'
        when {{ r }} >= 3 and {{ f }} >= 3 then 'loyal'
        when {{ r }} >= 4 then 'new'
        when {{ r }} <= 2 and {{ f }} >= 3 then 'at_risk'
        when {{ r }} <= 2 then 'hibernating'
        else 'needs_attention'
    end
{%- endmacro %}

{#- What a customer_360 row says of the buyer, as a number: equal for rows whose figures are equal.
    ``row`` names the table or CTE. The RFM scores and figures_as_of (which move with time) are left out.
    A hash, so the column carries no personal data of its own. -#}
{% macro customer_fingerprint(row) -%}
    farm_fingerprint(to_json_string(struct(
        {{ row }}.user_id, {{ row }}.is_known_customer, {{ row }}.first_name, {{ row }}.last_name,
        {{ row }}.email, {{ row }}.email_is_masked, {{ row }}.orders_count, {{ row }}.lifetime_value,
        {{ row }}.average_ticket, {{ row }}.first_order_at, {{ row }}.last_order_at,
        {{ row }}.purchase_frequency, {{ row }}.days_between_orders, {{ row }}.recent_orders
    )))
{%- endmacro %}

{#- Whether every row of the customer_360 a build merges into has its figures' fingerprint: an earlier
    version's table, replaced whole by every build, has no such column, and one whose first merge after
    the pre-hook added it failed holds none yet. Reads that one narrow column. -#}
{% macro customer_360_has_fingerprints() -%}
    {%- if not this_has_column('figures_fingerprint') -%}
        {{ return(false) }}
    {%- endif -%}
    {{ return(run_query(
        "select countif(figures_fingerprint is null) = 0 from " ~ this
    ).columns[0].values()[0]) }}
{%- endmacro %}

{#- customer_360's pre-hook: the fingerprint column, on the table an earlier version built (dbt's
    append_new_columns would add it too, through the API, after the build computed its rows). -#}
{% macro add_customer_360_fingerprints() -%}
    {%- if is_incremental() and execute and not this_has_column('figures_fingerprint') -%}
        alter table {{ this }} add column if not exists figures_fingerprint int64
    {%- else -%}
        select 1  -- the table is new, or has the column
    {%- endif -%}
{%- endmacro %}

{#- customer_360's post-hook: the profile:<user id> rows of buyers whose customer document landed since the
    last build of customer_360 (less the lookback; their figures went to the document's row, which the
    merge wrote) and is in silver, named as constants, which prune the table's blocks (clustered by
    customer_id); none landed: no statement. Before a build of it was recorded, or past
    var('profiles_recomputed_by_id') documents, every profile row with a document goes. -#}
{% macro delete_buyers_with_a_document() -%}
    {%- if not (is_incremental() and execute) -%}
        {{ return("select 1  -- built whole: no profile row of a buyer with a document") }}
    {%- endif -%}
    {%- set since = watermark_since() -%}
    {%- set documented = none if since is none else changed_ids(
        "select distinct concat('profile:', user_id) from " ~ source('vtex', 'vtex_customers')
        ~ " where ingested_at >= " ~ since
        ~ " and user_id in (select user_id from " ~ ref('customers') ~ " where user_id is not null)",
        'profiles_recomputed_by_id'
    ) -%}
    {%- if documented is none -%}
        delete from {{ this }}
        where starts_with(customer_id, 'profile:')
            and user_id in (select user_id from {{ ref('customers') }} where user_id is not null)
    {%- elif documented -%}
        delete from {{ this }} where {{ in_constants('customer_id', documented) }}
    {%- else -%}
        select 1  -- no customer document landed since the last build
    {%- endif -%}
{%- endmacro %}
