"""JSON Schemas (draft 2020-12) of the manifest, the policy configuration and the user mapping.

The schema files are package data; load them with ``policy.schemas.load_schema``.
"""
