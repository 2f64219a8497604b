-- Runs once, when the postgresql service initialises an empty data volume (docker-entrypoint-initdb.d).
-- Temporal's databases (temporal, temporal_visibility) are made by temporalio/auto-setup; this adds the
-- portal database of the hub with a role of its own, as HUB_DATABASE_URL in docker-compose.yml expects.
-- The password is for this local stack only: in production the hub gets its own server and secret.
CREATE ROLE hub WITH LOGIN PASSWORD 'hub';
CREATE DATABASE hub OWNER hub;
