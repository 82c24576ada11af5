"""A simulated iRODS zone and a fake PREP runtime, for tests and local trials.

This is a stand-in, NOT an iRODS server: a SQLite catalog and a vault
directory that reproduce the semantics a real iRODS 5.0.2 / 4.3.5 server with
the Python rule engine plugin showed when probed (error codes, ACL levels and
inheritance, no overwrite without force, AVUs, sha2 checksums, PEP firing,
delayExec). Its golden records live in reference/prep-observed/ and the
conformance tests replay them. Everything else is a documented approximation
(see docs/simulated-zone.md).
"""
