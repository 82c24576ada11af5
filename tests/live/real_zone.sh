#!/usr/bin/env bash
# A real iRODS zone for the live tests, with this checkout installed by docs/install.md's own blocks.
# Usage and flags: tests/live/real_zone.py (--fresh | --reinstall | --env-only). Run as root.
# Prints the environment file to source before `pytest -m live`; exits 3 when ../shared/irods/ is absent.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python3 "$here/real_zone.py" "$@"
