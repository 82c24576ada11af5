main {
  *b = "/tempZone/home/rods/probe-pz-RUN";
  *f = "/tempZone/home/omero-svc/probe-pz-svc";
  *e = errorcode(msiCollCreate("*f/privsub", "1", *s)); writeLine("stdout", "svc_collcreate_fixture *e");
  *e = errorcode(msiDataObjCreate("*f/own.txt", "forceFlag=", *fd)); writeLine("stdout", "svc_create_fixture *e");
  *e = errorcode(msiDataObjWrite(*fd, "own data\n", *len)); writeLine("stdout", "svc_write_fixture *e");
  *e = errorcode(msiDataObjClose(*fd, *s)); writeLine("stdout", "svc_close_fixture *e");
  *j = "{\"entity_name\": \"*f/own.txt\", \"entity_type\": \"data_object\", \"operations\": [{\"operation\": \"add\", \"attribute\": \"pz.k\", \"value\": \"v\", \"units\": \"\"}]}";
  *e = errorcode(msi_atomic_apply_metadata_operations(*j, *out)); writeLine("stdout", "svc_meta_add_own_object *e");
  *j = "{\"entity_name\": \"*f\", \"entity_type\": \"collection\", \"operations\": [{\"operation\": \"add\", \"attribute\": \"pz.c\", \"value\": \"w\", \"units\": \"\"}]}";
  *e = errorcode(msi_atomic_apply_metadata_operations(*j, *out)); writeLine("stdout", "svc_meta_add_own_collection *e");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_NAME = '*f') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_own_collection rows=*n");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_NAME = '*b') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_unreadable_collection rows=*n");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_NAME = '*b/r1') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_granted_collection rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME where COLL_NAME = '*f' and DATA_NAME = 'own.txt') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_own_object rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME where COLL_NAME = '*b' and DATA_NAME = 'a.txt') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_unreadable_object rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME where COLL_NAME = '*b' and DATA_NAME = 'ck.txt') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_read_granted_object rows=*n");
  *e = errorcode(msiObjStat("*b", *o)); writeLine("stdout", "svc_objstat_unreadable_collection *e");
  *e = errorcode(msiObjStat("*f/", *o)); writeLine("stdout", "svc_objstat_trailing_slash_own_collection *e");
  *n = 0; foreach(*r in SELECT COLL_ACCESS_NAME, COLL_USER_NAME where COLL_NAME = '*f') { *n = *n + 1; writeLine("stdout", "  row *r"); } writeLine("stdout", "svc_gq_acl_own_collection rows=*n");
  *n = 0; foreach(*r in SELECT DATA_ACCESS_NAME, USER_NAME where COLL_NAME = '*f' and DATA_NAME = 'own.txt') { *n = *n + 1; writeLine("stdout", "  row *r"); } writeLine("stdout", "svc_gq_acl_own_object rows=*n");
  *n = 0; foreach(*r in SELECT COLL_ACCESS_NAME, COLL_USER_NAME where COLL_NAME = '*b') { *n = *n + 1; } writeLine("stdout", "svc_gq_acl_unreadable_collection rows=*n");
  *n = 0; foreach(*r in SELECT META_DATA_ATTR_NAME, META_DATA_ATTR_VALUE, META_DATA_ATTR_UNITS where COLL_NAME = '*f' and DATA_NAME = 'own.txt') { *n = *n + 1; } writeLine("stdout", "svc_gq_metadata_own_object rows=*n");
  *n = 0; foreach(*r in SELECT META_COLL_ATTR_NAME, META_COLL_ATTR_VALUE, META_COLL_ATTR_UNITS where COLL_NAME = '*f') { *n = *n + 1; } writeLine("stdout", "svc_gq_metadata_own_collection rows=*n");
  *n = 0; foreach(*r in SELECT COLL_NAME where META_COLL_ATTR_NAME = 'pz.c' and META_COLL_ATTR_VALUE = 'w') { *n = *n + 1; } writeLine("stdout", "svc_gq_find_by_metadata_collection rows=*n");
  *n = 0; foreach(*r in SELECT COLL_NAME, DATA_NAME where META_DATA_ATTR_NAME = 'pz.k' and META_DATA_ATTR_VALUE = 'v') { *n = *n + 1; } writeLine("stdout", "svc_gq_find_by_metadata_data_object rows=*n");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_PARENT_NAME = '*f') { *n = *n + 1; } writeLine("stdout", "svc_gq_list_own_subcollections rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME, DATA_SIZE, DATA_CHECKSUM, DATA_OWNER_NAME where COLL_NAME = '*f') { *n = *n + 1; } writeLine("stdout", "svc_gq_list_own_data_objects rows=*n");
  *n = 0; foreach(*r in SELECT DATA_RESC_HIER where COLL_NAME = '*f' and DATA_NAME = 'own.txt') { *n = *n + 1; writeLine("stdout", "  row *r"); } writeLine("stdout", "svc_gq_resc_hier_own_object rows=*n");
  *n = 0; foreach(*r in SELECT USER_TYPE where USER_NAME = 'nosuchuser' and USER_ZONE = 'tempZone') { *n = *n + 1; } writeLine("stdout", "svc_gq_user_type_unknown rows=*n");
  *e = errorcode(msiDataObjOpen("objPath=*f/own.txt++++openFlags=O_RDONLY", *rfd)); writeLine("stdout", "svc_open_own_object *e");
  *e = errorcode(msiDataObjRead(*rfd, 65536, *buf)); writeLine("stdout", "svc_read_own_object *e");
  *e = errorcode(msiDataObjRead(*rfd, 65536, *buf2)); writeLine("stdout", "svc_read_own_object_at_eof *e");
  *e = errorcode(msiDataObjClose(*rfd, *s)); writeLine("stdout", "svc_close_own_object *e");
  *e = errorcode(msiDataObjChksum("*b/ck.txt", "", *c)); writeLine("stdout", "svc_chksum_read_only_stored_checksum *e");
  *e = errorcode(msiDataObjChksum("*f/own.txt", "", *c)); writeLine("stdout", "svc_chksum_own_object *e");
  *e = errorcode(delayExec("<PLUSET>3600s</PLUSET>", "writeLine('serverLog', 'pz-svc-delayed')", "")); writeLine("stdout", "svc_delayexec *e");
  *n = 0; foreach(*r in SELECT RULE_EXEC_NAME, RULE_EXEC_TIME where RULE_EXEC_NAME like '%pz-svc-delayed%') { *n = *n + 1; } writeLine("stdout", "svc_gq_delayed_rules_own rows=*n");
  *e = errorcode(msiSetACL("recursive", "own", "rods", "*f/privsub")); writeLine("stdout", "svc_setacl_own_recursive_to_user *e");
  *e = errorcode(msiSetACL("recursive", "read", "omero-svc", "*f/privsub")); writeLine("stdout", "svc_setacl_self_read_recursive *e");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_NAME = '*f/privsub') { *n = *n + 1; } writeLine("stdout", "svc_gq_kind_after_handover rows=*n");
  *e = errorcode(msiCollCreate("*f/privsub/more", "0", *s)); writeLine("stdout", "svc_collcreate_after_handover *e");
  *e = errorcode(msiDataObjUnlink("objPath=*f/own.txt++++forceFlag=", *s)); writeLine("stdout", "svc_unlink_own_object *e");
  *e = errorcode(msiDataObjUnlink("objPath=*f/own.txt++++forceFlag=", *s)); writeLine("stdout", "svc_unlink_missing *e");
}
INPUT null
OUTPUT ruleExecOut
