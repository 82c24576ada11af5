#!/bin/bash
# Healthy = the entrypoint finished provisioning and the server answers a catalog query.
set -eu
test -e /run/omero-snapshots-ready
runuser -u irods -- env -i HOME=/var/lib/irods PATH=/usr/sbin:/usr/bin:/sbin:/bin ils >/dev/null
