"""OMERO snapshots in iRODS: server-side policy (decisions and use cases)."""

import logging as _logging

# A library logs; the application (CLI, rule entry points) decides where it goes.
_logging.getLogger("omero_snapshots").addHandler(_logging.NullHandler())
