"""The scenarios of tests/scenarios.py against a REAL iRODS zone with the policy installed (`pytest -m live`).

Configured by two iRODS client environments (irods_environment.json, with their .irodsA):

    IRODS_ENVIRONMENT_FILE        the OMERO service account (omero-svc, a rodsuser)
    IRODS_ADMIN_ENVIRONMENT_FILE  a rodsadmin (creates and removes the test users, calls the admin rules)

For the docker/ stack: eval "$(python docker/make_client_envs.py)" prints both. Optional:
OMERO_SNAPSHOTS_LANDING (default /<zone>/home/<service account>/landing),
OMERO_SNAPSHOTS_LIVE_TIMEOUT (seconds a drop may take, default 120: the delay server sleeps up to
30 s between scans), OMERO_SNAPSHOTS_LIVE_SETTLE (seconds to wait before checking that nothing
happened, default 5). Without configuration, or when the server cannot be reached, every test is
skipped and says why. Each test makes its own users (t<hex>), OMERO identities (o<hex>) and OMERO
server name, and removes them, their snapshots and its drops afterwards.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from harness import LiveHarness
from scenarios import SCENARIOS

pytestmark = pytest.mark.live

@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario_live(h: LiveHarness, scenario: Callable[[Any], None]) -> None:
    scenario(h)
