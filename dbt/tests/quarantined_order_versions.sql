-- Order versions the landing refused in the day before this build: changes silver does not have.
-- Warns with each one's reason (kept in dbt_test__audit); bronze.quarantine holds the records, and the
-- HubQuarantineRateHigh alert watches the share as they land.
{{ config(severity='warn') }}

select entity_id as order_id, event_key, reason, quarantined_at
from {{ source('vtex', 'quarantine') }}
where quarantined_at >= {{ day_before_build() }}
    and entity = 'vtex_orders'
