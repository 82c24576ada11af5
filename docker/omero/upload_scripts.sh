#!/bin/bash
# One-shot (compose service omero-scripts): register the three OMERO scripts of
# omero_client/scripts as official scripts, replacing older versions. Runs in the
# official OMERO.server image, which has the omero CLI.
set -euo pipefail

log() { printf '[omero-snapshots scripts] %s\n' "$*"; }
die() { log "ERROR: $*"; exit 1; }

: "${OMERO_HOST:?}" "${OMERO_PORT:?}" "${OMERO_ROOT_USER:?}" "${OMERO_ROOT_PASSWORD:?}" "${OMERO_SCRIPTS_PATH:?}"
SRC=/opt/omero-snapshots/scripts
SCRIPTS="Save_to_iRODS.py List_iRODS_Snapshots.py Load_from_iRODS.py"
OMERO=/opt/omero/server/venv3/bin/omero

for s in $SCRIPTS; do
    [ -f "$SRC/$s" ] || die "$SRC/$s is missing (omero_client/scripts/ of the repository is mounted there)"
done

# The CLI keeps its sessions under a writable directory of its own.
export OMERO_USERDIR=/tmp/omero-cli
export OMERO_SESSIONDIR=/tmp/omero-cli/sessions
mkdir -p "$OMERO_SESSIONDIR"

log "waiting for OMERO.server at ${OMERO_HOST}:${OMERO_PORT}"
for i in $(seq 1 120); do
    if "$OMERO" login -s "$OMERO_HOST" -p "$OMERO_PORT" -u "$OMERO_ROOT_USER" -w "$OMERO_ROOT_PASSWORD" \
            >/dev/null 2>&1; then
        break
    fi
    [ "$i" -lt 120 ] || die "could not log in to OMERO as $OMERO_ROOT_USER within 10 minutes"
    sleep 5
done

# The script's path in OMERO's script repository is the path given to "upload".
stage=$(mktemp -d)
mkdir -p "$stage/$OMERO_SCRIPTS_PATH"
cd "$stage"
for s in $SCRIPTS; do
    rel="$OMERO_SCRIPTS_PATH/$s"
    cp "$SRC/$s" "$rel"
    if out=$("$OMERO" script upload --official "$rel" 2>&1); then
        log "uploaded $rel: $out"
    elif grep -q "already exists" <<<"$out"; then
        "$OMERO" script replace "/$rel" "$rel" || "$OMERO" script replace "$rel" "$rel" \
            || die "could not replace $rel"
        log "replaced $rel"
    else
        die "could not upload $rel: $out"
    fi
done
"$OMERO" script list | grep -F "$OMERO_SCRIPTS_PATH" || die "the scripts are not listed after upload"
"$OMERO" logout >/dev/null 2>&1 || true
log "done"
