"""Every microservice and genquery call policy/prep_zone.py makes, with the argument shapes it uses, and
the golden record that shows what a real iRODS 5.0.2 + PREP 5.0.1 answered.

The fake passed every golden record of rounds 1-8 and still diverged where no probe exercised the exact
calls the project makes (issue 10). This table closes that class of gap: each PrepZone call and shape
names the golden record of a real server's answer (tests/data/prep-observed/: rounds 2, 3, 9, 10, and the
project's own probes of tests/data/prep-probes/, run in rounds 11 and 12). A new shape names a probe of
tests/data/prep-probes/ ('probe:NAME') until a real server has answered it: it is then listed as NOT YET
OBSERVED, in the warnings of every run and here. tests/test_prepzone_calls.py holds the fake to the golden
records of the probes; tests/test_live_probes.py holds it to the real zone's answers on every live run.

    python -m tests.prepzone_calls          prints the table (docs/simulated-zone.md carries a copy)
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PREP_ZONE = os.path.join(ROOT, "policy", "prep_zone.py")
PROBES = os.path.join(HERE, "data", "prep-probes")
PROBE_PYS = [os.path.join(PROBES, n) for n in ("probe_prepzone_calls.py", "probe_prepzone_quotes.py")]
PROBE_SVCS = [os.path.join(PROBES, n) for n in ("probe_prepzone_calls_svc.r", "probe_prepzone_quotes_svc.r")]
GOLDEN_FILES = {
    "round2": "round2-runtime-and-rodsuser.jsonl",
    "round3": "round3-buffers-and-delay.jsonl",
    "round9": "round9-eof-and-rule-arguments.jsonl",
    "round10": "round10-prepzone-calls.jsonl",
    "round11": "round11-prepzone-calls.jsonl",
    "round12": "round12-prepzone-quotes.jsonl",
    "round12fix": "round12-fixity-verify.jsonl",
}
SVC_RECORD = "rodsuser_native_rule_language_calls"

# (call key, PrepZone method(s), shape, caller, evidence)
#   call key: the microservice name, or 'genquery [COLUMNS] where CONDITION COLUMNS'
#   evidence: 'roundN:probe' (a golden record), 'roundN:svc#check' (a check of round 10's rodsuser native rule),
#             or 'probe:name' (one of our probes: not yet observed)
Q_COLL = "genquery [COLL_NAME] where COLL_NAME"
Q_DATA = "genquery [DATA_NAME] where COLL_NAME, DATA_NAME"
Q_CACL = "genquery [COLL_ACCESS_NAME, COLL_USER_NAME] where COLL_NAME"
Q_DACL = "genquery [DATA_ACCESS_NAME, USER_NAME] where COLL_NAME, DATA_NAME"
Q_CMETA = "genquery [META_COLL_ATTR_NAME, META_COLL_ATTR_VALUE, META_COLL_ATTR_UNITS] where COLL_NAME"
Q_DMETA = "genquery [META_DATA_ATTR_NAME, META_DATA_ATTR_VALUE, META_DATA_ATTR_UNITS] where COLL_NAME, DATA_NAME"
Q_SUBS = "genquery [COLL_NAME] where COLL_PARENT_NAME"
Q_OBJS = "genquery [DATA_NAME, DATA_SIZE, DATA_CHECKSUM, DATA_OWNER_NAME] where COLL_NAME"
Q_FINDC = "genquery [COLL_NAME] where META_COLL_ATTR_NAME, META_COLL_ATTR_VALUE"
Q_FINDD = "genquery [COLL_NAME, DATA_NAME] where META_DATA_ATTR_NAME, META_DATA_ATTR_VALUE"
Q_UTYPE = "genquery [USER_TYPE] where USER_NAME, USER_ZONE"
Q_HIER = "genquery [DATA_RESC_HIER] where COLL_NAME, DATA_NAME"
Q_RESC = "genquery [RESC_TYPE_NAME, RESC_LOC] where RESC_NAME"
Q_RULES = "genquery [RULE_EXEC_NAME, RULE_EXEC_TIME] where RULE_EXEC_NAME"
R, S = "rods", "rodsuser"
MD, RN, TX, CC = "msi_atomic_apply_metadata_operations", "msiDataObjRename", "msiTarFileExtract", "msiCollCreate"
CALLS: List[Tuple[str, str, str, str, str]] = [
    # ---- existence (kind/exists/stat/rename/acl/metadata/list_collection): genquery, never msiObjStat
    #      of a missing path
    (Q_COLL, "kind", "existing collection", R, "round11:pz_gq_kind_collection"),
    (Q_COLL, "kind", "missing collection", R, "round11:pz_gq_kind_collection_missing"),
    (Q_COLL, "kind", "path of a data object", R, "round11:pz_gq_kind_collection_is_data_object"),
    (Q_COLL, "kind", "own collection", S, "round11:svc_gq_kind_own_collection"),
    (Q_COLL, "kind", "collection it may not read (hidden)", S, "round11:svc_gq_kind_unreadable_collection"),
    (Q_COLL, "kind", "read-granted collection", S, "round11:svc_gq_kind_granted_collection"),
    (Q_COLL, "kind", "collection after the hand-over (read)", S, "round11:svc_gq_kind_after_handover"),
    (Q_COLL, "kind", "a quote in the name (doubled: GenQuery1's escape)", R, "round12:pq_gq_eq_doubled_quote"),
    (Q_COLL, "kind", "a lone quote in the value: -1084000 (never sent)", R, "round12:pq_gq_eq_quote"),
    (Q_COLL, "kind", "a backslash before the quote: -1084000", R, "round12:pq_gq_eq_backslash_quote"),
    (Q_COLL, "kind", "a double-quoted value: -1084000", R, "round12:pq_gq_eq_double_quoted"),
    (Q_COLL, "kind", "a backslash in the name (literal with '=')", R, "round12:pq_gq_eq_backslash"),
    (Q_COLL, "kind", "'%' in the name (literal with '=')", R, "round12:pq_gq_eq_percent"),
    (Q_COLL, "kind", "own collection with a quote in the name", S, "round12:svcq_gq_kind_collection_like"),
    (Q_DATA, "kind", "existing data object", R, "round11:pz_gq_kind_data_object"),
    (Q_DATA, "kind", "missing data object", R, "round11:pz_gq_kind_data_object_missing"),
    (Q_DATA, "kind", "name of a collection", R, "round11:pz_gq_kind_data_object_is_collection"),
    (Q_DATA, "kind", "missing parent", R, "round11:pz_gq_kind_missing_parent"),
    (Q_DATA, "kind", "own data object", S, "round11:svc_gq_kind_own_object"),
    (Q_DATA, "kind", "object it may not read (hidden)", S, "round11:svc_gq_kind_unreadable_object"),
    (Q_DATA, "kind", "read-granted object", S, "round11:svc_gq_kind_read_granted_object"),
    (Q_DATA, "kind", "quotes in the names (doubled)", R, "round12:pq_gq_kind_object_doubled_quote"),
    (Q_DATA, "kind", "quoted names in a collection it may not read", S,
     "round12:svcq_gq_kind_object_like_unreadable"),
    # ---- msiObjStat (stat, after kind() found the path)
    ("msiObjStat", "stat", "data object (char_array fields, 11-digit times)", R, "round10:objstat_data_object"),
    ("msiObjStat", "stat", "collection", R, "round10:objstat_collection"),
    ("msiObjStat", "stat", "collection with a trailing slash", R, "round10:objstat_trailing_slash_collection"),
    ("msiObjStat", "stat", "empty data object", R, "round10:objstat_empty_data_object"),
    ("msiObjStat", "stat", "missing (only on a race after kind())", R, "round10:objstat_missing"),
    ("msiObjStat", "stat", "relative path", R, "round10:objstat_relative_path"),
    ("msiObjStat", "stat", "object it may not read (-310000)", S, "round10:svc#objstat_no_access_data_object"),
    ("msiObjStat", "stat", "read-granted collection", S, "round10:svc#objstat_read_granted_collection"),
    ("msiObjStat", "stat", "collection it may not read", S, "round11:svc_objstat_unreadable_collection"),
    ("msiObjStat", "stat", "own collection, trailing slash", S, "round11:svc_objstat_trailing_slash_own_collection"),
    ("msiObjStat", "stat", "object with a stored checksum (chksum field)", R, "round11:pz_objstat_checksummed_object"),
    ("msiObjStat", "stat", "object read-granted in a collection it may not read (-310000)", S,
     "round12:svcq_objstat_read_granted_object_unreadable_collection"),
    ("msiObjStat", "stat", "own collection with a quote in the name", S, "round12:svcq_objstat_own_quoted_collection"),
    # ---- msiCollCreate (create_collection)
    (CC, "create_collection", "new, '0'", R, "round10:collcreate_new_nonrecursive"),
    (CC, "create_collection", "existing, '0' (-809000)", R, "round10:collcreate_existing_nonrecursive"),
    (CC, "create_collection", "existing, '1' (success)", R, "round10:collcreate_existing_recursive"),
    (CC, "create_collection", "missing parent, '0' (-814000)", R,
     "round10:collcreate_missing_parent_nonrecursive"),
    (CC, "create_collection", "missing parents, '1'", R, "round10:collcreate_missing_parent_recursive"),
    (CC, "create_collection", "name of a data object (-834000)", R, "round10:collcreate_name_is_data_object"),
    (CC, "create_collection", "no write permission", R, "round10:collcreate_no_permission"),
    (CC, "create_collection", "trailing slash", R, "round10:collcreate_trailing_slash"),
    (CC, "create_collection", "no write permission", S, "round10:svc#collcreate_no_permission"),
    (CC, "create_collection", "under a read-granted collection", S,
     "round10:svc#collcreate_read_granted_parent_recursive"),
    (CC, "create_collection", "in its own home, '1'", S, "round11:svc_collcreate_fixture"),
    (CC, "create_collection", "after the hand-over (read)", S, "round11:svc_collcreate_after_handover"),
    # ---- msiDataObjRename (rename)
    (RN, "rename", "data object, '0'", R, "round10:rename_data_object"),
    (RN, "rename", "into another collection", R, "round10:rename_data_object_into_other_collection"),
    (RN, "rename", "onto an existing data object (-834000)", R, "round10:rename_onto_existing_data_object"),
    (RN, "rename", "onto an existing collection (-833000)", R,
     "round10:rename_data_object_onto_existing_collection"),
    (RN, "rename", "missing source: RETURNS -808000", R, "round10:rename_missing_src"),
    (RN, "rename", "missing parent (-814000)", R, "round10:rename_into_missing_parent"),
    (RN, "rename", "collection, '1'", R, "round10:rename_collection"),
    (RN, "rename", "collection onto a collection", R, "round10:rename_collection_onto_existing_collection"),
    (RN, "rename", "collection onto a data object", R,
     "round10:rename_collection_onto_existing_data_object"),
    (RN, "rename", "wrong type flag: RETURNS -808000", R, "round10:rename_data_object_with_collection_flag"),
    (RN, "rename", "wrong type flag on a collection", R, "round10:rename_collection_with_data_object_flag"),
    (RN, "rename", "no ACL on the source", R, "round10:rename_no_access_src"),
    (RN, "rename", "read-only source", R, "round10:rename_read_granted_src"),
    (RN, "rename", "into a collection without write", R, "round10:rename_into_no_access_collection"),
    (RN, "rename", "onto itself (-339000)", R, "round10:rename_onto_itself"),
    (RN, "rename", "source it may not read (-808000)", S, "round10:svc#rename_no_access_src"),
    (RN, "rename", "into a read-granted collection", S, "round10:svc#rename_into_read_granted_collection"),
    # ---- msiSetACL (set_acl, set_inheritance)
    ("msiSetACL", "set_acl", "read to a user", R, "round10:setacl_read_known_user"),
    ("msiSetACL", "set_acl", "modify_object", R, "round10:setacl_modify_object_level"),
    ("msiSetACL", "set_acl", "null removes", R, "round10:setacl_null_removes"),
    ("msiSetACL", "set_acl", "unknown user (-827000)", R, "round10:setacl_unknown_user"),
    ("msiSetACL", "set_acl", "unknown level (-816000)", R, "round10:setacl_bad_level"),
    ("msiSetACL", "set_acl", "missing path (-816000)", R, "round10:setacl_missing_path"),
    ("msiSetACL", "set_acl", "recursive on a collection", R, "round10:setacl_recursive_collection"),
    ("msiSetACL", "set_acl", "no ACL", R, "round10:setacl_no_access"),
    ("msiSetACL", "set_acl", "read-only", R, "round10:setacl_read_granted_only"),
    ("msiSetACL", "set_acl", "own recursively to a user (hand-over)", R, "round11:pz_setacl_own_recursive"),
    ("msiSetACL", "set_acl", "caller to read recursively (hand-over)", R, "round11:pz_setacl_read_recursive_self"),
    ("msiSetACL", "set_inheritance", "inherit", R, "round10:setacl_inherit_collection"),
    ("msiSetACL", "set_inheritance", "noinherit, recursive", R, "round10:setacl_noinherit_collection"),
    ("msiSetACL", "set_inheritance", "inherit on a data object (-818000)", R, "round10:setacl_inherit_on_data_object"),
    ("msiSetACL", "set_acl", "own to another user, own object", S, "round2:svc_grant_own_to_other"),
    ("msiSetACL", "set_acl", "itself to read, own object", S, "round2:svc_self_to_read"),
    ("msiSetACL", "set_acl", "admin: mode (-818000)", S, "round10:svc#setacl_admin_mode_rodsuser"),
    ("msiSetACL", "set_acl", "no ACL", S, "round10:svc#setacl_no_access"),
    ("msiSetACL", "set_acl", "unknown user, own object (-827000)", S, "round10:svc#setacl_unknown_user_own_object"),
    ("msiSetACL", "set_inheritance", "inherit / noinherit, own collection", S,
     "round10:svc#setacl_noinherit_own_collection"),
    ("msiSetACL", "set_acl", "own recursively to a user, own collection", S,
     "round11:svc_setacl_own_recursive_to_user"),
    ("msiSetACL", "set_acl", "itself to read recursively, own collection", S, "round11:svc_setacl_self_read_recursive"),
    # ---- ACL queries (acl, owns)
    (Q_CACL, "acl", "collection", R, "round10:gq_acl_collection"),
    (Q_CACL, "acl", "after an admin grant", R, "round10:gq_acl_collection_after_admin_grant"),
    (Q_CACL, "acl", "after the hand-over", R, "round11:pz_gq_acl_after_handover"),
    (Q_CACL, "acl", "own collection", S, "round11:svc_gq_acl_own_collection"),
    (Q_CACL, "acl", "collection it may not read", S, "round11:svc_gq_acl_unreadable_collection"),
    (Q_CACL, "acl", "a quote in the name (doubled)", R, "round12:pq_gq_acl_doubled_quote"),
    (Q_DACL, "acl", "data object", R, "round10:gq_acl_data_object"),
    (Q_DACL, "acl", "missing data object", R, "round10:gq_acl_missing"),
    (Q_DACL, "acl", "after null", R, "round10:gq_acl_data_object_after_null"),
    (Q_DACL, "acl", "own data object", S, "round11:svc_gq_acl_own_object"),
    # ---- msi_atomic_apply_metadata_operations (apply_metadata)
    (MD, "apply_metadata", "add to a data object", R, "round10:meta_add_data_object"),
    (MD, "apply_metadata", "add to a collection", R, "round10:meta_add_collection"),
    (MD, "apply_metadata", "AVU that exists (success, no change)", R,
     "round10:meta_add_duplicate_avu"),
    (MD, "apply_metadata", "remove an absent AVU (success)", R,
     "round10:meta_remove_absent_avu"),
    (MD, "apply_metadata", "remove + add batch", R, "round10:meta_remove_and_add_batch"),
    (MD, "apply_metadata", "batch with an existing AVU", R,
     "round10:meta_batch_second_op_fails"),
    (MD, "apply_metadata", "wrong entity_type (-130000)", R,
     "round10:meta_wrong_entity_type"),
    (MD, "apply_metadata", "missing entity (-130000)", R, "round10:meta_missing_entity"),
    (MD, "apply_metadata", "missing collection", R, "round10:meta_missing_collection"),
    (MD, "apply_metadata", "no ACL", R, "round10:meta_no_access"),
    (MD, "apply_metadata", "read-only", R, "round10:meta_read_granted_only"),
    (MD, "apply_metadata", "empty value (-130000)", R, "round10:meta_empty_value"),
    (MD, "apply_metadata", "not JSON (-1084000)", R, "round10:meta_not_json"),
    (MD, "apply_metadata", "own object", S, "round2:svc_atomic_metadata_own_object"),
    (MD, "apply_metadata", "no ACL (-130000)", S, "round10:svc#meta_no_access"),
    (MD, "apply_metadata", "existing AVU, own object", S,
     "round10:svc#meta_duplicate_avu_own_object"),
    (MD, "apply_metadata", "add to own collection", S,
     "round11:svc_meta_add_own_collection"),
    (MD, "apply_metadata", "object read-granted in a collection it may not read (-130000)", S,
     "round12:svcq_meta_read_granted_object_unreadable_collection"),
    # ---- metadata queries (metadata)
    (Q_CMETA, "metadata", "collection", R, "round10:gq_metadata_collection"),
    (Q_CMETA, "metadata", "collection it may not read", S, "round10:svc#gq_metadata_no_access_collection"),
    (Q_CMETA, "metadata", "own collection", S, "round11:svc_gq_metadata_own_collection"),
    (Q_DMETA, "metadata", "data object", R, "round10:gq_metadata_data_object"),
    (Q_DMETA, "metadata", "object without AVUs", R, "round10:gq_metadata_none"),
    (Q_DMETA, "metadata", "missing object", R, "round10:gq_metadata_missing_object"),
    (Q_DMETA, "metadata", "object without ACL (rods sees it)", R, "round10:gq_metadata_no_access_object"),
    (Q_DMETA, "metadata", "own object", S, "round11:svc_gq_metadata_own_object"),
    (Q_DMETA, "metadata", "quotes in the names (doubled)", R, "round12:pq_gq_metadata_doubled_quote"),
    # ---- msiDataObjChksum (checksum)
    ("msiDataObjChksum", "checksum", "data object", R, "round10:chksum_data_object"),
    ("msiDataObjChksum", "checksum", "second call", R, "round10:chksum_again"),
    ("msiDataObjChksum", "checksum", "empty object", R, "round10:chksum_empty_object"),
    ("msiDataObjChksum", "checksum", "missing: RETURNS -808000", R, "round10:chksum_missing"),
    ("msiDataObjChksum", "checksum", "collection: RETURNS -808000", R, "round10:chksum_collection"),
    ("msiDataObjChksum", "checksum", "no ACL (-818000)", R, "round10:chksum_no_access"),
    ("msiDataObjChksum", "checksum", "read-only (-818000)", R, "round10:chksum_read_granted"),
    ("msiDataObjChksum", "checksum", "object it may not read (-808000)", S, "round10:svc#chksum_no_access"),
    ("msiDataObjChksum", "checksum", "own object", S, "round10:svc#chksum_own_object"),
    ("msiDataObjChksum", "checksum", "read-only, checksum stored", S, "round11:svc_chksum_read_only_stored_checksum"),
    ("msiDataObjChksum", "verify_checksum", "ChksumAll+verifyChksum: equal 0, changed or gone raises -407000", R,
     "round12fix:prep_msiDataObjChksum"),
    ("msiDataObjChksum", "verify_checksum", "read-only object: verify allowed, -407000 when changed/gone/unrecorded", S,
     "round12fix:native_msiDataObjChksum_as_read_only_rodsuser"),
    # ---- listing (list_collection, remove_collection's emptiness check)
    (Q_SUBS, "list_collection", "subcollections", R, "round10:gq_list_subcollections"),
    (Q_SUBS, "list_collection", "none", R, "round10:gq_list_subcollections_none"),
    (Q_SUBS, "list_collection", "missing parent", R, "round10:gq_list_subcollections_missing"),
    (Q_SUBS, "list_collection", "300 rows (paging)", R, "round10:gq_list_300_subcollections"),
    (Q_SUBS, "list_collection", "partly granted", S, "round10:svc#gq_subcollections_partly_granted"),
    (Q_SUBS, "list_collection", "own collection", S, "round11:svc_gq_list_own_subcollections"),
    (Q_SUBS, "list_collection", "a quote in the name (doubled)", R, "round12:pq_gq_subcollections_doubled_quote"),
    (Q_SUBS, "list_collection", "own collection with a quote in the name", S, "round12:svcq_gq_subcollections_like"),
    (Q_OBJS, "list_collection", "data objects ('' for no checksum, size a str)", R, "round10:gq_list_data_objects"),
    (Q_OBJS, "list_collection", "collection without ACL (rods sees all)", R,
     "round10:gq_list_data_objects_no_access_collection"),
    (Q_OBJS, "list_collection", "collection it may not read (DATA_NAME only)", S,
     "round10:svc#gq_data_objects_no_access_collection"),
    (Q_OBJS, "list_collection", "own collection", S, "round11:svc_gq_list_own_data_objects"),
    (Q_OBJS, "list_collection", "a quote in the name (doubled)", R, "round12:pq_gq_objects_doubled_quote"),
    (Q_OBJS, "list_collection", "a backslash in the name (literal with '=')", R, "round12:pq_gq_objects_eq_backslash"),
    (Q_OBJS, "list_collection", "own collection with a quote in the name", S, "round12:svcq_gq_objects_like"),
    (Q_OBJS, "objects_under", "each collection below the top (the listing query)", R,
     "round10:gq_list_data_objects"),
    (Q_COLL, "objects_under", "collections below the top (COLL_NAME like top/%)", R,
     "round11:pz_gq_collections_below"),
    (Q_COLL, "objects_under", "a quote in the top (doubled)", R, "round12:pq_gq_below_like_doubled_quote"),
    (Q_COLL, "objects_under", "LIKE with a lone quote: -1084000", R, "round12:pq_gq_like_quote"),
    (Q_COLL, "objects_under", "LIKE with a doubled quote", R, "round12:pq_gq_like_doubled_quote"),
    (Q_COLL, "objects_under", "LIKE: '_' matches any character (filtered exactly)", R, "round12:pq_gq_like_underscore"),
    (Q_COLL, "objects_under", "LIKE is case-sensitive", R, "round12:pq_gq_like_other_case"),
    (Q_COLL, "objects_under", "LIKE: a backslash escapes (no match)", R, "round12:pq_gq_like_backslash"),
    (Q_COLL, "objects_under", "LIKE: '_' in a backslash's place", R, "round12:pq_gq_like_underscore_for_backslash"),
    (Q_COLL, "objects_under", "'%' in the top (a wildcard: filtered exactly)", R, "round12:pq_gq_below_like_percent"),
    # ---- find_by_metadata
    (Q_FINDC, "find_by_metadata", "collection", R, "round10:gq_find_by_metadata_collection"),
    (Q_FINDC, "find_by_metadata", "no match", R, "round10:gq_find_by_metadata_none"),
    (Q_FINDC, "find_by_metadata", "own collection", S, "round11:svc_gq_find_by_metadata_collection"),
    (Q_FINDD, "find_by_metadata", "data object", R, "round10:gq_find_by_metadata_data_object"),
    (Q_FINDD, "find_by_metadata", "own data object", S, "round11:svc_gq_find_by_metadata_data_object"),
    (Q_FINDD, "find_by_metadata", "a quote in the value (doubled)", R, "round12:pq_gq_find_by_metadata_doubled_quote"),
    # ---- user_type
    (Q_UTYPE, "user_type", "rodsuser", R, "round10:gq_user_type_rodsuser"),
    (Q_UTYPE, "user_type", "rodsadmin", R, "round10:gq_user_type_rodsadmin"),
    (Q_UTYPE, "user_type", "unknown user", R, "round10:gq_user_type_unknown"),
    (Q_UTYPE, "user_type", "other zone", R, "round10:gq_user_type_other_zone"),
    (Q_UTYPE, "user_type", "without USER_ZONE (no zone name)", R, "round11:pz_gq_user_type_without_zone"),
    (Q_UTYPE, "user_type", "rodsadmin, asked by the rodsuser", S, "round10:svc#gq_user_type_by_rodsuser"),
    (Q_UTYPE, "user_type", "unknown user, asked by the rodsuser", S, "round11:svc_gq_user_type_unknown"),
    # ---- delayExec (schedule) and delayed_rules
    ("delayExec", "schedule", "python instance, PLUSET", R, "round10:delayexec_python_instance"),
    ("delayExec", "schedule", "from the rodsuser's PEP", S, "round3:delay_from_rodsuser_pep"),
    ("delayExec", "schedule", "native, by the rodsuser", S, "round11:svc_delayexec"),
    (Q_RULES, "delayed_rules", "rules not yet run (like)", R, "round10:gq_delayed_rules_like"),
    (Q_RULES, "delayed_rules", "none", R, "round10:gq_delayed_rules_none"),
    (Q_RULES, "delayed_rules", "its own rules, asked by the rodsuser", S, "round11:svc_gq_delayed_rules_own"),
    (Q_RULES, "delayed_rules", "a lone quote in the pattern: -1084000 (never sent)", R,
     "round12:pq_gq_like_delayed_rule_text"),
    (Q_RULES, "delayed_rules", "a doubled quote in the pattern", R, "round12:pq_gq_like_delayed_rule_text_doubled"),
    # ---- msiDataObjUnlink (remove_object)
    ("msiDataObjUnlink", "remove_object", "data object, forceFlag (no trash)", R, "round10:unlink_data_object"),
    ("msiDataObjUnlink", "remove_object", "missing: RETURNS -808000", R, "round10:unlink_missing"),
    ("msiDataObjUnlink", "remove_object", "collection path: RETURNS -808000", R, "round10:unlink_collection_path"),
    ("msiDataObjUnlink", "remove_object", "no ACL", R, "round10:unlink_no_access"),
    ("msiDataObjUnlink", "remove_object", "read-only", R, "round10:unlink_read_granted"),
    ("msiDataObjUnlink", "remove_object", "nothing left in the trash", R, "round10:gq_trash_after_forced_unlink"),
    ("msiDataObjUnlink", "remove_object", "object it may not read (-808000)", S, "round10:svc#unlink_no_access"),
    ("msiDataObjUnlink", "remove_object", "own object", S, "round11:svc_unlink_own_object"),
    ("msiDataObjUnlink", "remove_object", "missing", S, "round11:svc_unlink_missing"),
    # ---- msiRmColl (remove_collection, after its own emptiness check: msiRmColl is recursive)
    ("msiRmColl", "remove_collection", "empty collection", R, "round10:rmcoll_empty"),
    ("msiRmColl", "remove_collection", "missing (-310000)", R, "round10:rmcoll_missing"),
    ("msiRmColl", "remove_collection", "data object path (-834000)", R, "round10:rmcoll_data_object_path"),
    ("msiRmColl", "remove_collection", "no ACL", R, "round10:rmcoll_no_access"),
    ("msiRmColl", "remove_collection", "non-empty: RECURSIVE", R, "round10:rmcoll_non_empty_is_recursive"),
    ("msiRmColl", "remove_collection", "read-granted", S, "round10:svc#rmcoll_read_granted"),
    # ---- native extraction
    (Q_HIER, "native_extract_resource", "data object", R, "round10:gq_resc_hier"),
    (Q_HIER, "native_extract_resource", "missing", R, "round10:gq_resc_hier_missing"),
    (Q_HIER, "native_extract_resource", "own object", S, "round11:svc_gq_resc_hier_own_object"),
    (Q_RESC, "native_extract_resource", "demoResc", R, "round10:gq_resc_info"),
    (Q_RESC, "native_extract_resource", "unknown resource", R, "round10:gq_resc_info_unknown"),
    (Q_RESC, "native_extract_resource", "asked by the rodsuser", S, "round10:svc#gq_resc_info_by_rodsuser"),
    (TX, "native_extract", "new target", R, "round10:tarextract_new_target"),
    (TX, "native_extract", "members exist (-46000)", R, "round10:tarextract_target_exists_same_members"),
    (TX, "native_extract", "existing empty target", R, "round10:tarextract_existing_empty_target"),
    (TX, "native_extract", "missing archive (-1821000)", R, "round10:tarextract_missing_archive"),
    (TX, "native_extract", "unknown resource (-78000)", R, "round10:tarextract_unknown_resource"),
    (TX, "native_extract", "not a tar (-1)", R, "round10:tarextract_not_a_tar"),
    (TX, "native_extract", "target without write", R, "round10:tarextract_into_no_access_collection"),
    (TX, "native_extract", "archive without ACL", R, "round10:tarextract_no_access_archive"),
    (TX, "native_extract", "archive it may not read (-1821000)", S,
     "round10:svc#tarextract_no_access_archive"),
    # ---- read_small: msiDataObjOpen / msiDataObjRead / msiDataObjClose
    ("msiDataObjOpen", "read_small", "O_RDONLY (fd 3)", R, "round10:open_rdonly"),
    ("msiDataObjOpen", "read_small", "missing (-358000)", R, "round10:open_missing"),
    ("msiDataObjOpen", "read_small", "collection (-358000)", R, "round10:open_collection"),
    ("msiDataObjOpen", "read_small", "no ACL (-818000)", R, "round10:open_no_access"),
    ("msiDataObjOpen", "read_small", "read-granted", R, "round10:open_read_granted"),
    ("msiDataObjOpen", "read_small", "object it may not read (-358000)", S, "round10:svc#open_no_access"),
    ("msiDataObjOpen", "read_small", "own object", S, "round11:svc_open_own_object"),
    ("msiDataObjOpen", "read_small", "object read-granted in a collection it may not read (-358000)", S,
     "round12:svcq_open_read_granted_object_unreadable_collection"),
    ("msiDataObjRead", "read_small", "part of the object", R, "round10:read_5_of_12"),
    ("msiDataObjRead", "read_small", "the rest, fewer than asked", R, "round10:read_65536_rest_7"),
    ("msiDataObjRead", "read_small", "at end of file: None", R, "round10:read_at_eof"),
    ("msiDataObjRead", "read_small", "past end of file: None", R, "round10:read_past_eof_again"),
    ("msiDataObjRead", "read_small", "n = 0: None", R, "round10:read_zero_bytes"),
    ("msiDataObjRead", "read_small", "more than the size", R, "round10:read_exactly_size_13_of_12"),
    ("msiDataObjRead", "read_small", "after an exact read: None", R, "round10:read_after_exact"),
    ("msiDataObjRead", "read_small", "empty object: None", R, "round10:read_empty_object"),
    ("msiDataObjRead", "read_small", "three reads of a 12-byte object", R, "round9:read_to_eof"),
    ("msiDataObjRead", "read_small", "closed fd (-345000)", R, "round10:read_after_close"),
    ("msiDataObjRead", "read_small", "unknown fd (-345000)", R, "round10:read_bogus_fd"),
    ("msiDataObjRead", "read_small", "own object", S, "round11:svc_read_own_object"),
    ("msiDataObjRead", "read_small", "own object at end of file", S, "round11:svc_read_own_object_at_eof"),
    ("msiDataObjClose", "read_small", "close", R, "round10:close"),
    ("msiDataObjClose", "read_small", "twice (-130000)", R, "round10:close_again"),
    ("msiDataObjClose", "read_small", "unknown fd (-130000)", R, "round10:close_bogus_fd"),
    ("msiDataObjClose", "read_small", "own object", S, "round11:svc_close_own_object"),
]


# Records of our probes that no row names, and why: set-up steps of the probes (fixture, create, grant) are
# recognised by name; these others back the fake's model or repeat a row's observation.
OTHER_EVIDENCE = {
    "svc_chksum_own_object": "repeats round10:svc#chksum_own_object",
    "svc_meta_add_own_object": "repeats round2:svc_atomic_metadata_own_object",
    "svcq_objstat_unreadable_quoted_collection": "repeats round11:svc_objstat_unreadable_collection",
    "svcq_gq_read_granted_object_by_name_only": "the fake's visibility model: without a collection column in the "
                                                "query the object is listed",
    "svcq_gq_read_granted_object_size": "the fake's visibility model: with COLL_NAME it is not",
}


def observed(evidence: str) -> bool:
    return not evidence.startswith("probe:")


# ---------------------------------------------------------------------------------------------- the module's calls
_COND_COL = re.compile(r"\b([A-Z][A-Z_]+)\s*(?:=|like\b)")


def _strings(node: ast.AST) -> List[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _cond_columns(texts: Sequence[str]) -> List[str]:
    cols: List[str] = []
    for t in texts:
        for m in _COND_COL.finditer(t):
            c = m.group(1)
            if c not in cols:
                cols.append(c)
    return cols


def module_calls(path: str = PREP_ZONE) -> Set[str]:
    """The call keys policy/prep_zone.py uses: every `_msi("name", ...)` and every `_query([cols], cond)`
    (condition columns read from the string constants of the condition, or of the variable it names)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    keys: Set[str] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assigned: Dict[str, List[str]] = {}
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        assigned.setdefault(t.id, []).extend(_strings(n.value))
            elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
                assigned.setdefault(n.target.id, []).extend(_strings(n.value))
        for n in ast.walk(fn):
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
                continue
            if n.func.attr == "_msi":
                first = n.args[0] if n.args else None
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    keys.add("_msi(<not a literal name>)")
                else:
                    keys.add(first.value)
            elif n.func.attr == "_query":
                cols_node = n.args[0] if n.args else None
                if not isinstance(cols_node, ast.List) or not all(
                        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in cols_node.elts):
                    keys.add("genquery <columns not a literal list>")
                    continue
                cols = [e.value for e in cols_node.elts]  # type: ignore[attr-defined]
                cond = n.args[1] if len(n.args) > 1 else None
                texts = assigned.get(cond.id, []) if isinstance(cond, ast.Name) else _strings(cond) if cond else []
                keys.add("genquery [{}] where {}".format(", ".join(cols), ", ".join(_cond_columns(texts))))
    return keys


# ---------------------------------------------------------------------------------------------- evidence
def _golden_dir() -> Optional[str]:
    try:
        import conformance_support as cs
    except ImportError:
        from tests import conformance_support as cs  # type: ignore[no-redef]
    return cs.golden_dir()


def golden_evidence(evidence: str, golden: str) -> Optional[Dict[str, Any]]:
    """The golden record (or rodsuser check) an evidence string names, or None if there is none."""
    rnd, _, name = evidence.partition(":")
    path = os.path.join(golden, GOLDEN_FILES[rnd])
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if name.startswith("svc#"):
        check = name[len("svc#"):]
        for r in records:
            if r.get("probe") == SVC_RECORD:
                for res in r["results"]:
                    if res.get("check") == check:
                        return dict(res, rule=r["rule"])
        return None
    for r in records:
        if r.get("probe") == name:
            return r
    return None


def probe_names() -> Set[str]:
    """The probe names our probe files write (Python rule: the name argument; native rule: the check)."""
    names: Set[str] = set()
    for path in PROBE_PYS:
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r'_(?:q|call)\(cb, "([a-z0-9_]+)"', f.read()))
    for path in PROBE_SVCS:
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r'writeLine\("stdout", "([a-z0-9_]+) (?:\*e|rows=)', f.read()))
    return names


def svc_rule_line(check: str) -> Optional[str]:
    """The line of our rodsuser probe files that prints `check` (what call that record is of)."""
    for path in PROBE_SVCS:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if '"{} '.format(check) in line:
                    return line
    return None


def table_markdown() -> str:
    lines = ["| call | PrepZone method | shape | as | status | evidence |", "|---|---|---|---|---|---|"]
    for call, method, shape, who, ev in CALLS:
        lines.append("| `{}` | {} | {} | {} | {} | {} |".format(
            call, method, shape.replace("|", "/"), who, "observed" if observed(ev) else "NOT YET OBSERVED",
            ev.replace("probe:", "probe ")))
    return "\n".join(lines)


def summary() -> str:
    n_obs = sum(1 for c in CALLS if observed(c[4]))
    keys = sorted({c[0] for c in CALLS})
    return "{} PrepZone call shapes over {} calls: {} observed on a real server, {} not yet observed".format(
        len(CALLS), len(keys), n_obs, len(CALLS) - n_obs)


def main(argv: Sequence[str] = ()) -> int:
    print(summary())
    print()
    print(table_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
