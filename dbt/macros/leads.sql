{#- The lead flow's rules, one home each, used by the gold models and checked by unit tests. -#}

{#- How far along the funnel a status is: received 0, delivered 1, accepted 2, contacted 3,
    qualified 4, sold 5; the statuses in between (routed, withdrawn, lost, ...) do not move a lead on. -#}
{% macro funnel_rank(status) -%}
    case {{ status }}
        when 'received' then 0
        when 'delivered' then 1
        when 'accepted' then 2
        when 'contacted' then 3
        when 'qualified' then 4
        when 'sold' then 5
    end
{%- endmacro %}

{#- Whether a dealer's status means it took the lead: accepted, or any later step (a dealer that only
    reports "contacted" accepted it then). "lost" is not taking it. -#}
{% macro took_the_lead(status) -%}
    {{ status }} in ('accepted', 'contacted', 'qualified', 'sold')
{%- endmacro %}

{#- The delivery a status change is about, from its event key: when that delivery was claimed (the
    key's "@" mark, Python's isoformat of a UTC time, warehouse/leads.py); null on changes landed
    before keys named it. Its "T" is made a space: the timestamp's canonical text. -#}
{% macro delivery_claimed_at(event_key) -%}
    safe_cast(replace(regexp_extract({{ event_key }}, r'@([^@]+)$'), 'T', ' ') as timestamp)
{%- endmacro %}

{#- The ``fraction`` percentile of the numbers in ``sorted_values`` (an array in ascending order), with
    linear interpolation between the two nearest, as PERCENTILE_CONT computes it; null for an empty
    array. Written with array offsets, so BigQuery and the emulator compute the same. -#}
{% macro percentile(sorted_values, fraction) -%}
    (
        select if(
            count_values = 0,
            null,
            {{ sorted_values }}[offset(cast(floor(position) as int64))]
                + ({{ sorted_values }}[offset(cast(ceil(position) as int64))]
                   - {{ sorted_values }}[offset(cast(floor(position) as int64))])
                * (position - floor(position))
        )
        from (
            -- An aggregate of nothing may be a null array: both count it as empty.
            select
                coalesce(array_length({{ sorted_values }}), 0) as count_values,
                {{ fraction }} * greatest(coalesce(array_length({{ sorted_values }}), 0) - 1, 0) as position
        )
    )
{%- endmacro %}
