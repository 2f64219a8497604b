#!/bin/sh
# One-shot set-up of the Temporal namespace the hub uses (the temporal-setup service of docker-compose.yml):
# waits for the Temporal frontend, makes sure the namespace exists and registers the hub's search
# attributes, all of type Keyword. Safe to run on every `docker compose up`: what exists is left alone.
#
# Usage: setup.sh NAME...   the search attribute names (core.constants.SEARCH_ATTRIBUTES)
# Environment: TEMPORAL_ADDRESS (host:port, required), NAMESPACE (default "default"), NAMESPACE_RETENTION
# (used only when this script creates the namespace), SETUP_ATTEMPTS and SETUP_INTERVAL_SECONDS (how long
# to wait for the server), SETTLE_SECONDS (pause after registering, for the server's namespace cache).
set -eu

address="${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS, e.g. temporal:7233}"
namespace="${NAMESPACE:-default}"
retention="${NAMESPACE_RETENTION:-168h}"
attempts="${SETUP_ATTEMPTS:-90}"
interval="${SETUP_INTERVAL_SECONDS:-2}"
settle="${SETTLE_SECONDS:-12}"

if [ "$#" -eq 0 ]; then
    echo "usage: $0 SEARCH_ATTRIBUTE_NAME..." >&2
    exit 2
fi

log() {
    echo "temporal-setup: $*"
}

# The frontend answers SERVING (grep -w: NOT_SERVING does not count).
serving() {
    temporal operator cluster health --address "$address" 2>/dev/null | grep -qw SERVING
}

namespace_exists() {
    temporal operator namespace describe --address "$address" "$namespace" >/dev/null 2>&1
}

# The attribute is registered in the namespace with type Keyword.
registered() {
    temporal operator search-attribute list --address "$address" --namespace "$namespace" 2>/dev/null \
        | grep -w -- "$1" | grep -qi keyword
}

# wait_for WHAT COMMAND...: run COMMAND until it succeeds, or give up after SETUP_ATTEMPTS tries.
wait_for() {
    what="$1"
    shift
    tries=0
    until "$@"; do
        tries=$((tries + 1))
        if [ "$tries" -ge "$attempts" ]; then
            log "gave up waiting for $what" >&2
            exit 1
        fi
        sleep "$interval"
    done
}

log "waiting for the Temporal frontend at $address"
wait_for "the Temporal frontend at $address" serving

# temporalio/auto-setup registers its DEFAULT_NAMESPACE in the background once the server is up: give it
# a moment, then create the namespace here (a namespace other than the default one, for instance).
tries=0
until namespace_exists; do
    tries=$((tries + 1))
    if [ "$tries" -ge 10 ]; then
        log "creating namespace $namespace (retention $retention)"
        temporal operator namespace create --address "$address" --retention "$retention" "$namespace" \
            || log "namespace create failed; it may exist already, checking again"
        break
    fi
    sleep "$interval"
done
wait_for "namespace $namespace" namespace_exists
log "namespace $namespace exists"

created=0
for name in "$@"; do
    if registered "$name"; then
        log "search attribute $name (Keyword) already registered"
        continue
    fi
    log "registering search attribute $name (Keyword)"
    if temporal operator search-attribute create --address "$address" --namespace "$namespace" \
        --name "$name" --type Keyword; then
        created=1
    else
        # Tolerated when it already exists (another run got there first); checked just below.
        log "create $name failed; it may exist already, checking again"
    fi
    wait_for "search attribute $name in namespace $namespace" registered "$name"
done

if [ "$created" -eq 1 ] && [ "$settle" -gt 0 ]; then
    # Other Temporal services refresh their namespace cache every ~10 s; starts that set the new
    # attributes are accepted everywhere once it has.
    log "waiting ${settle}s for the namespace cache to refresh"
    sleep "$settle"
fi
log "done: namespace $namespace has search attributes $*"
