{#- How the silver models read bronze and merge what they read: only what landed since the last build,
    and never a version older than the one silver holds.

    BigQuery prunes partitions only on constant filters. So the bound is computed before the model runs
    and written into its SQL as a literal: silver's newest ingested_at minus a lookback. The lookback
    (var incremental_lookback_minutes, 180) takes in landings that arrive late: ingested_at is the
    landing worker's clock when its append started, and an append can be acknowledged after a build read
    the table, or come from a worker whose clock runs behind. Rows read again merge over themselves. -#}

{#- The first day bronze is read from on a full refresh: a constant, so even that read is pruned. -#}
{% macro bronze_begin() -%}
    timestamp '{{ var("bronze_begin", "2000-01-01") }} 00:00:00+00'
{%- endmacro %}

{#- A day before this build started, as a literal: recent partitions only, pruned on BigQuery. -#}
{% macro day_before_build() -%}
    timestamp '{{ (run_started_at - modules.datetime.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S") }}+00'
{%- endmacro %}

{#- The literal lower bound of ingested_at that an incremental build of this model reads: when its last
    build started (kept in build_watermarks), less the lookback. A model never built since that table
    came takes silver's newest ingested_at instead, which reads the whole column once. -#}
{% macro bronze_since() -%}
    {%- if not (is_incremental() and execute) -%}
        {{ return(bronze_begin()) }}
    {%- endif -%}
    {%- set since = watermark_since() -%}
    {%- if since is not none -%}
        {{ return(since) }}
    {%- endif -%}
    {%- set lookback = var("incremental_lookback_minutes", 180) -%}
    {{ return(timestamp_literal(
        "timestamp_sub(max(ingested_at), interval " ~ lookback ~ " minute)", "select ingested_at from " ~ this,
        default=bronze_begin()
    )) }}
{%- endmacro %}

{#- Where each incremental model's builds stand (silver's, customer_360 and customer_days): one row per model, when the last build that built it
    started (dbt's run_started_at, before it read bronze). Reading a model's bound from here costs
    BigQuery's 10 MB minimum, where max(ingested_at) over the model reads that column whole, every 30
    seconds. One table in the silver dataset, made by on-run-start where it is missing and written once
    per build, by on-run-end, in one statement: BigQuery runs two DML statements on a table at once and
    fails those that touch the same partition together, so a statement per model would fail builds. -#}
{% macro build_watermarks() -%}
    {{ return(api.Relation.create(
        database=target.database, schema=generate_schema_name("silver", none) | trim, identifier="build_watermarks"
    )) }}
{%- endmacro %}

{#- The start of this model's last successful build, in microseconds since the epoch; none before one. -#}
{% macro last_build_start() -%}
    {%- set table = build_watermarks() -%}
    {%- if adapter.get_relation(table.database, table.schema, table.identifier) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(run_query(
        "select unix_micros(max(build_started)) from " ~ table ~ " where model = '" ~ this.identifier ~ "'"
    ).columns[0].values()[0]) }}
{%- endmacro %}

{#- When this model's last successful build started, less the lookback, as a literal; none before one. -#}
{% macro watermark_since() -%}
    {%- set started = last_build_start() -%}
    {%- if started is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(micros_literal(started - var("incremental_lookback_minutes", 180) * 60 * 1000000)) }}
{%- endmacro %}

{#- Whether this model's table has the column ``name`` (a table an earlier version built may lack it). -#}
{% macro this_has_column(name) -%}
    {{ return(execute and name in (adapter.get_columns_in_relation(this) | map(attribute='name') | list)) }}
{%- endmacro %}

{% macro create_build_watermarks() -%}
    create table if not exists {{ build_watermarks() }} (model string not null, build_started timestamp not null)
{%- endmacro %}

{#- on-run-end: the incremental models this build built (silver's, customer_days, and customer_360, whose post-hook reads
    the customer documents landed since). Each next reads bronze from this build's start, unless it read
    a silver model this build did not build (a selection, a failure upstream): then from no later than
    that model's own watermark, which it cannot be ahead of. -#}
{% macro record_build_starts(results) -%}
    {%- set built = {} -%}
    {%- for result in results
        if result.node.resource_type == "model" and result.status == "success"
        and result.node.config.materialized == "incremental" -%}
        {%- do built.update({result.node.unique_id: result.node}) -%}
    {%- endfor -%}
    {%- if not built -%}
        {{ return("select 0 as build_starts_recorded  -- no incremental model built") }}
    {%- endif -%}
    {%- set known = {} -%}
    {%- for row in run_query("select model, unix_micros(build_started) from " ~ build_watermarks()).rows -%}
        {%- do known.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {%- set rows = [] -%}
    {%- for node in built.values() -%}
        {%- set behind = [] -%}
        {%- for parent in node.depends_on.nodes if parent.startswith("model.") and parent not in built -%}
            {%- set parent_node = graph.nodes[parent] -%}
            {%- if parent_node.config.materialized == "incremental" and parent_node.fqn[1] == "silver" -%}
                {#- none known: from the first day, as a full refresh would read -#}
                {%- do behind.append(known.get(parent_node.name, 0)) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set since = build_started() if not behind
            else "least(" ~ build_started() ~ ", " ~ micros_literal(behind | min) ~ ")" -%}
        {%- do rows.append("select '" ~ node.name ~ "' as model, " ~ since ~ " as build_started") -%}
    {%- endfor -%}
    merge {{ build_watermarks() }} as known
    using ({{ rows | join(" union all ") }}) as built
    on known.model = built.model
    when matched then update set build_started = built.build_started
    when not matched then insert (model, build_started) values (built.model, built.build_started)
{%- endmacro %}

{#- ``aggregate`` over the rows of ``query``, run now, as a TIMESTAMP literal for the SQL dbt writes next
    (``default`` when it is null), rounded down to the second: a lower bound stays a lower bound, and
    the emulator misreads fractional seconds in literals. It travels as microseconds since the epoch:
    exact, and UTC. -#}
{% macro timestamp_literal(aggregate, query, default) -%}
    {%- set micros = run_query(
        "select unix_micros(" ~ aggregate ~ ") from (" ~ query ~ ")"
    ).columns[0].values()[0] -%}
    {{ return(default if micros is none else micros_literal(micros)) }}
{%- endmacro %}

{#- Microseconds since the epoch as a TIMESTAMP literal, rounded down to the second. -#}
{% macro micros_literal(micros) -%}
    {%- set dt = modules.datetime -%}
    {%- set moment = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros | int) -%}
    {{ return("timestamp '" ~ moment.strftime("%Y-%m-%d %H:%M:%S") ~ "+00'") }}
{%- endmacro %}

{#- The rows of a bronze table this build reads: filtered by a constant before any window. ``typed``
    names a typed column every row landed by this version has: rows an earlier version landed get it from
    ``python -m warehouse.migrate``, and until then they are left out rather than merged as nulls. -#}
{% macro landed_versions(table, typed=none, source_name='vtex') -%}
    select * from {{ source(source_name, table) }}
    where ingested_at >= {{ bronze_since() }}
    {%- if typed %} and {{ typed }} is not null{% endif %}
{%- endmacro %}

{#- Whether the version ``new`` is more recent than ``current``, in latest_version's order: the source's
    change time (none is oldest), then when it landed, then its event key. The same version read again
    is not newer: its row is left as it is rather than rewritten. -#}
{% macro is_newer_version(new, current) -%}
    (
        coalesce({{ new }}.source_updated_at, {{ bronze_begin() }})
            > coalesce({{ current }}.source_updated_at, {{ bronze_begin() }})
        or (
            coalesce({{ new }}.source_updated_at, {{ bronze_begin() }})
                = coalesce({{ current }}.source_updated_at, {{ bronze_begin() }})
            and (
                {{ new }}.ingested_at > {{ current }}.ingested_at
                or ({{ new }}.ingested_at = {{ current }}.ingested_at and {{ new }}.event_key > {{ current }}.event_key)
            )
        )
    )
{%- endmacro %}

{#- What the rows to merge hold, read before the merge (the table dbt made of them is small): how many;
    the oldest ``column`` among them as a literal, or none when there is nothing to bound by (no rows, or
    a row without the column: its target row could be in any partition); and the days (UTC) their
    ``column`` falls on, as day numbers since the epoch, when they are at most var('merge_bound_days')
    (366): a late change to an old order should not make the merge read every day since. A build re-reads
    the orders changed in the lookback's 3 hours, whose creation days easily span more than a month, so
    the bound must hold that many days (one range of about 130 characters each, far within BigQuery's
    query length). -#}
{% macro rows_to_merge(source, column=none) -%}
    {%- set oldest = "unix_micros(min(" ~ column ~ ")), countif(" ~ column ~ " is null)" if column else "null, 0" -%}
    {%- set found = run_query("select count(*), " ~ oldest ~ " from " ~ source ~ " as merged").rows[0] -%}
    {%- set bound = "" if found[1] is none or found[2] > 0 else micros_literal(found[1]) -%}
    {%- set days = [] -%}
    {%- if bound -%}
        {%- set days = run_query(
            "select distinct unix_date(date(" ~ column ~ ")) from " ~ source ~ " as merged order by 1"
            ~ " limit " ~ (var("merge_bound_days", 366) + 1)
        ).columns[0].values() | map("int") | list -%}
    {%- endif -%}
    {{ return({"rows": found[0], "oldest": bound, "days": days if days | length <= var("merge_bound_days", 366) else []}) }}
{%- endmacro %}

{#- A bound on ``column`` of the merge's target to the given days: one constant range per day, so
    BigQuery reads only those partitions (ranges on the partition column joined by OR still prune). -#}
{% macro days_bound(column, days) -%}
    {%- set epoch = modules.datetime.date(1970, 1, 1) -%}
    {%- set ranges = [] -%}
    {%- for day in days -%}
        {%- set start = epoch + modules.datetime.timedelta(days=day) -%}
        {#- The last day TIMESTAMP holds has no next day to end before. -#}
        {%- set end = column ~ " <= timestamp '9999-12-31 23:59:59.999999+00'" if start.year == 9999
            and start.month == 12 and start.day == 31 else
            column ~ " < timestamp '" ~ (start + modules.datetime.timedelta(days=1)).isoformat() ~ " 00:00:00+00'" -%}
        {%- do ranges.append("(" ~ column ~ " >= timestamp '" ~ start.isoformat() ~ " 00:00:00+00' and " ~ end ~ ")") -%}
    {%- endfor -%}
    {{ return(ranges | join(" or ")) }}
{%- endmacro %}

{#- The silver merge, with three additions to the statement dbt writes (dbt's merge has none of them):

    - meta merge_newer_only: a matched row is updated only by a newer version (is_newer_version), so a
      version landed out of order (an older one after a newer one: a backfill, a late retry), read in a
      later window than the newer one, does not overwrite it; meta merge_insert_only: never updated,
      and the statement has no UPDATE clause at all: BigQuery bills a MERGE with one (even one that never
      applies) for every column of the target's partitions it reads, where an insert-only MERGE bills
      only the columns it reads.
    - meta merge_bound (a column): the target is read only on the days (UTC) that column holds among the
      rows merged (past var('merge_bound_days') days: from the oldest on), as literals, so BigQuery reads
      and rewrites only those partitions. The column must never change between an entity's versions (an
      order's creation time): a row outside the bound would not be matched and would be inserted again.
    - meta merge_ids (the unique key's column, of a table clustered by it): the target is read only
      where it may hold the ids merged, written in as constants (past var('merge_ids_most') of them:
      all of it), so BigQuery reads only the clustered blocks that can hold them: the cost of a merge
      into an unpartitioned table then follows what it merges, not the table's size.
    - no merge at all when nothing landed since the last build (the daily customers, between bursts). -#}
{% macro bigquery__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
    {%- set predicates = [] + (incremental_predicates or []) -%}
    {%- set meta = config.get("meta") or {} -%}
    {%- set bound = meta.get("merge_bound") -%}
    {%- set merging = rows_to_merge(source, bound) -%}
    {%- if merging.rows == 0 -%}
        {#- Nothing landed since the last build: a MERGE would still read (and bill) its target. -#}
        {{ return("select 0 as rows_merged  -- nothing to merge") }}
    {%- endif -%}
    {%- if merging.oldest -%}
        {#- A target row without the column is always a candidate (an OR on the same column still
            prunes): it could be the row a merged version belongs to. -#}
        {%- set dest = "DBT_INTERNAL_DEST." ~ bound -%}
        {%- set within = days_bound(dest, merging.days) if merging.days else dest ~ " >= " ~ merging.oldest -%}
        {%- do predicates.append("(" ~ within ~ " or " ~ dest ~ " is null)") -%}
    {%- endif -%}
    {%- if meta.get("merge_ids") -%}
        {%- set column = meta.get("merge_ids") -%}
        {%- set ids = changed_ids("select distinct " ~ column ~ " from " ~ source, "merge_ids_most") -%}
        {%- if ids is not none -%}
            {%- do predicates.append(in_constants("DBT_INTERNAL_DEST." ~ column, ids)) -%}
        {%- endif -%}
    {%- endif -%}
    {%- set merge = default__get_merge_sql(target, source, unique_key, dest_columns, predicates) -%}
    {%- set matched, inserting = "when matched then update set", "when not matched then insert" -%}
    {%- set rewrites_matched = meta.get("merge_newer_only") or meta.get("merge_insert_only") -%}
    {%- if rewrites_matched and (matched not in merge or inserting not in merge) -%}
        {%- do exceptions.raise_compiler_error("dbt's merge has no '" ~ matched ~ "' before '" ~ inserting ~ "'") -%}
    {%- endif -%}
    {%- if meta.get("merge_insert_only") -%}
        {%- set head, rest = merge.split(matched, 1) -%}
        {{ return(head ~ inserting ~ rest.split(inserting, 1)[1]) }}
    {%- endif -%}
    {%- if meta.get("merge_newer_only") -%}
        {%- set condition = is_newer_version("DBT_INTERNAL_SOURCE", "DBT_INTERNAL_DEST") -%}
        {{ return(merge | replace(matched, "when matched and " ~ condition ~ " then update set")) }}
    {%- endif -%}
    {{ return(merge) }}
{%- endmacro %}

{#- One row per entity: its latest version, by the source's change time, then by when it landed.
    Rows landed twice (a retried append, a backfill and a hook) share an event key and collapse here. -#}
{% macro latest_version(relation, key="entity_id") -%}
    select *
    from {{ relation }}
    qualify row_number() over (
        partition by {{ key }}
        order by source_updated_at desc nulls last, ingested_at desc, event_key desc
    ) = 1
{%- endmacro %}

{#- The ids ``query`` finds (its first column), for a model to write into its SQL as constants: BigQuery
    prunes a clustered table's blocks for a constant filter on the clustering column, not for a filter
    through a subquery. None when the build is not incremental, or past var(limit_var, 10000) ids: the
    model then reads everything. -#}
{% macro changed_ids(query, limit_var) -%}
    {%- if not (is_incremental() and execute) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set most = var(limit_var, 10000) -%}
    {#- One more than the most it writes in, to tell "too many" without fetching them all. -#}
    {%- set ids = run_query(query ~ " limit " ~ (most + 1)).columns[0].values() | list -%}
    {{ return(none if ids | length > most else ids) }}
{%- endmacro %}

{#- ``column in (...)`` with ``ids`` as string constants (an empty list matches nothing, nor does a none). -#}
{% macro in_constants(column, ids) -%}
    {{ column }} in ({% for id in ids %}{{ "null" if id is none else string_literal(id) }}{{ ", " if not loop.last }}{% endfor %}{{ "null" if not ids }})
{%- endmacro %}

{#- ``text`` as a BigQuery string literal. Ids come from partners (VTEX, Zoho): quoted and escaped here,
    not JSON-encoded (JSON writes a character beyond U+FFFF as two \u escapes, which BigQuery refuses),
    so no id can break or change the statement. Other characters stand as they are (UTF-8). -#}
{% macro string_literal(text) -%}
    '{{ text | string | replace("\\", "\\\\") | replace("'", "\\'") | replace("\n", "\\n") | replace("\r", "\\r") }}'
{%- endmacro %}
