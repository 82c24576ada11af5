"""OMERO snapshots in iRODS: server-side policy (decisions and use cases)."""
