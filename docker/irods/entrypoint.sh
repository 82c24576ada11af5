#!/bin/bash
# iRODS provider entrypoint (docker/compose.yaml, service irods-provider).
#
#  1. wait for the catalog database;
#  2. once per container: unattended iRODS setup (setup_irods.py), then put the Python
#     rule engine plugin before the native rule language in server_config.json and
#     write /etc/irods/omero_snapshots/{config,mapping}.json if they do not exist yet;
#  3. every start: start the server in the background, create the service account and
#     its landing collection (idempotent), write its client environment for OMERO, run
#     the policy's doctor rule (informational), stop the server;
#  4. run the server in the foreground.
#
# All values come from the environment (docker/.env through compose.yaml).
set -euo pipefail

log() { printf '[omero-snapshots entrypoint] %s\n' "$*"; }
die() { log "ERROR: $*"; exit 1; }

for v in IRODS_ZONE_NAME IRODS_HOST IRODS_PORT IRODS_DATA_PORT_START IRODS_DATA_PORT_END \
         IRODS_DEFAULT_RESOURCE IRODS_ADMIN_USER IRODS_ADMIN_PASSWORD IRODS_NEGOTIATION_KEY \
         IRODS_ZONE_KEY IRODS_SERVICE_ACCOUNT IRODS_SERVICE_ACCOUNT_PASSWORD IRODS_LANDING_NAME \
         IRODS_DB_HOST IRODS_DB_PORT IRODS_DB_NAME IRODS_DB_USER IRODS_DB_PASSWORD OMERO_SERVER_UID; do
    [ -n "${!v:-}" ] || die "environment variable $v is not set (see docker/.env)"
done
[ "${#IRODS_NEGOTIATION_KEY}" -eq 32 ] || die "IRODS_NEGOTIATION_KEY must be exactly 32 bytes"

HERE=/opt/omero-snapshots
SETUP_MARKER=/var/lib/irods/.omero-snapshots-setup-done
READY_MARKER=/run/omero-snapshots-ready
POLICY_DIR=/etc/irods/omero_snapshots
SVC_ENV_DIR=/var/lib/irods/.omero-snapshots-svc          # the service account, for this script
OMERO_ENV_DIR=/run/omero-svc-irods-env                    # volume, mounted read-only into OMERO
OMERO_ENV_DIR_THERE=/opt/omero/server/.irods              # ... at this path
PID_FILE=/var/run/irods/irods-server.pid
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin
LANDING="/${IRODS_ZONE_NAME}/home/${IRODS_SERVICE_ACCOUNT}/${IRODS_LANDING_NAME}"
NATIVE_REP=irods_rule_engine_plugin-irods_rule_language-instance

rm -f "$READY_MARKER"

# Commands run with a clean environment: the container's IRODS_* variables would
# otherwise override the client environment files (icommands read IRODS_HOST etc.).
as_irods() { runuser -u irods -- env -i HOME=/var/lib/irods PATH="$CLEAN_PATH" LANG=C.UTF-8 "$@"; }
as_svc() {
    runuser -u irods -- env -i HOME=/var/lib/irods PATH="$CLEAN_PATH" LANG=C.UTF-8 \
        IRODS_ENVIRONMENT_FILE="$SVC_ENV_DIR/irods_environment.json" "$@"
}

# ------------------------------------------------------------------ 1. database
log "waiting for the catalog database ${IRODS_DB_HOST}:${IRODS_DB_PORT}"
for i in $(seq 1 120); do
    if pg_isready -q -h "$IRODS_DB_HOST" -p "$IRODS_DB_PORT" -d "$IRODS_DB_NAME" -U "$IRODS_DB_USER"; then
        break
    fi
    [ "$i" -lt 120 ] || die "the catalog database did not become ready"
    sleep 1
done

# ------------------------------------------------------------------ 2. setup, once
if [ ! -e "$SETUP_MARKER" ]; then
    log "first start of this container: unattended iRODS setup"
    unattended=$(mktemp /tmp/unattended_install.XXXXXX.json)
    trap 'rm -f "$unattended"' EXIT
    python3 "$HERE/configure_server.py" render "$HERE/unattended_install.json.template" "$unattended"
    # An existing catalog (a rebuilt container on the same database volume) is fine:
    # setup_irods.py skips table creation when the tables exist.
    env -i PATH="$CLEAN_PATH" HOME=/root LANG=C.UTF-8 \
        python3 /var/lib/irods/scripts/setup_irods.py --json_configuration_file "$unattended"
    rm -f "$unattended"
    trap - EXIT

    python3 "$HERE/configure_server.py" add-python-rep /etc/irods/server_config.json

    install -d -o irods -g irods -m 0750 "$POLICY_DIR"
    if [ ! -e "$POLICY_DIR/config.json" ]; then
        python3 "$HERE/configure_server.py" render "$HERE/omero_snapshots_config.json.template" \
            "$POLICY_DIR/config.json"
        log "wrote $POLICY_DIR/config.json"
    fi
    if [ ! -e "$POLICY_DIR/mapping.json" ]; then
        printf '{\n    "mapping_version": 1,\n    "users": []\n}\n' > "$POLICY_DIR/mapping.json"
        log "wrote an empty $POLICY_DIR/mapping.json"
    fi
    touch "$SETUP_MARKER"
fi

# Every start: the rule code belongs to root (setup_irods.py hands all of /etc/irods to
# irods); the policy configuration directory belongs to irods (enrolment writes mapping.json).
chown root:root /etc/irods/core.py
chown -R root:root /etc/irods/core.py.d
chmod 0644 /etc/irods/core.py
chown -R irods:irods "$POLICY_DIR"
chmod 0750 "$POLICY_DIR"
chmod 0640 "$POLICY_DIR"/*.json

as_irods irodsServer --validate-config || die "server_config.json does not validate (see above)"

# ------------------------------------------------------------------ 3. provisioning
log "starting iRODS in the background for provisioning"
as_irods irodsServer -d
for i in $(seq 1 120); do
    if as_irods ils >/dev/null 2>&1; then
        break
    fi
    [ "$i" -lt 120 ] || die "iRODS did not answer within 120 s"
    sleep 1
done

svc_info=$(as_irods iadmin lu "$IRODS_SERVICE_ACCOUNT" 2>&1 || true)
if grep -q '^user_type_name: rodsuser' <<<"$svc_info"; then
    log "service account $IRODS_SERVICE_ACCOUNT exists"
elif grep -q '^user_type_name:' <<<"$svc_info"; then
    die "$IRODS_SERVICE_ACCOUNT exists but is not a rodsuser: refusing to use it as the service account"
else
    as_irods iadmin mkuser "$IRODS_SERVICE_ACCOUNT" rodsuser
    log "created service account $IRODS_SERVICE_ACCOUNT (rodsuser)"
fi
as_irods iadmin moduser "$IRODS_SERVICE_ACCOUNT" password "$IRODS_SERVICE_ACCOUNT_PASSWORD"

irods_uid=$(id -u irods)
irods_gid=$(id -g irods)
OMS_PASSWORD="$IRODS_SERVICE_ACCOUNT_PASSWORD" python3 "$HERE/configure_server.py" write-client-env \
    --dir "$SVC_ENV_DIR" --host "$IRODS_HOST" --port "$IRODS_PORT" --zone "$IRODS_ZONE_NAME" \
    --user "$IRODS_SERVICE_ACCOUNT" --password-env OMS_PASSWORD --uid "$irods_uid" --gid "$irods_gid"

# The landing collection is created BY the service account, so it owns it and nobody
# else has access; inheritance off, so every drop is owned by its uploader alone.
as_svc imkdir -p "$LANDING"
as_svc ichmod noinherit "$LANDING"
log "landing collection $LANDING:"
as_svc ils -A "$LANDING" | sed -n '1,4p'

# The service account's client environment for OMERO: readable only by omero-server.
OMS_PASSWORD="$IRODS_SERVICE_ACCOUNT_PASSWORD" python3 "$HERE/configure_server.py" write-client-env \
    --dir "$OMERO_ENV_DIR" --consumer-dir "$OMERO_ENV_DIR_THERE" --host "$IRODS_HOST" \
    --port "$IRODS_PORT" --zone "$IRODS_ZONE_NAME" --user "$IRODS_SERVICE_ACCOUNT" \
    --password-env OMS_PASSWORD --uid "$OMERO_SERVER_UID" --gid 0 --omero-server-name "$OMERO_HOST"
log "wrote the service account's environment and omero_snapshots.json (server_name $OMERO_HOST) for OMERO (uid $OMERO_SERVER_UID, read-only)"

# Informational: the policy's self-check, through the native rule language instance
# (it passes string arguments and reads back the OUT parameter).
if ! as_irods irule -r "$NATIVE_REP" 'omero_snapshots_doctor(*out)' '*out=' '*out'; then
    log "WARNING: omero_snapshots_doctor did not run (see above); the server starts anyway"
fi

log "stopping the provisioning server"
server_pid=$(cat "$PID_FILE")
kill -TERM "$server_pid"
for i in $(seq 1 90); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 1
done
! kill -0 "$server_pid" 2>/dev/null || die "the provisioning server (pid $server_pid) did not stop"

# ------------------------------------------------------------------ 4. foreground
touch "$READY_MARKER"
log "iRODS ${IRODS_ZONE_NAME} ready; starting the server in the foreground"
# setpriv, not runuser: runuser would answer docker's SIGTERM with a SIGKILL seconds later, cutting the
# server's graceful shutdown short; setpriv execs the server itself, which then gets the signal.
exec setpriv --reuid=irods --regid=irods --init-groups \
    env -i HOME=/var/lib/irods PATH="$CLEAN_PATH" LANG=C.UTF-8 irodsServer --stdout
