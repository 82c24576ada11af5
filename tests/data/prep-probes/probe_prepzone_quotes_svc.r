main {
  *b = "/tempZone/home/rods/probe-pq-RUN";
  *f = "/tempZone/home/omero-svc/probe-pq-svc";
  *e = errorcode(msiCollCreate("*f/q'c/sub'1", "1", *s)); writeLine("stdout", "svcq_collcreate_quoted *e");
  *e = errorcode(msiDataObjCreate("*f/q'c/o'1.txt", "forceFlag=", *fd)); writeLine("stdout", "svcq_create_quoted *e");
  *e = errorcode(msiDataObjClose(*fd, *s)); writeLine("stdout", "svcq_close_quoted *e");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_NAME like '*f/q_c') { *n = *n + 1; writeLine("stdout", "  row *r"); } writeLine("stdout", "svcq_gq_kind_collection_like rows=*n");
  *n = 0; foreach(*r in SELECT COLL_NAME where COLL_PARENT_NAME like '*f/q_c') { *n = *n + 1; writeLine("stdout", "  row *r"); } writeLine("stdout", "svcq_gq_subcollections_like rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME, DATA_SIZE, DATA_CHECKSUM, DATA_OWNER_NAME where COLL_NAME like '*f/q_c') { *n = *n + 1; writeLine("stdout", "  row *r"); } writeLine("stdout", "svcq_gq_objects_like rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME where COLL_NAME like '*b/q_c' and DATA_NAME like 'o_1.txt') { *n = *n + 1; } writeLine("stdout", "svcq_gq_kind_object_like_unreadable rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME where DATA_NAME = 'ho.txt') { *n = *n + 1; } writeLine("stdout", "svcq_gq_read_granted_object_by_name_only rows=*n");
  *n = 0; foreach(*r in SELECT DATA_NAME, DATA_SIZE where COLL_NAME = '*b' and DATA_NAME = 'ho.txt') { *n = *n + 1; } writeLine("stdout", "svcq_gq_read_granted_object_size rows=*n");
  *e = errorcode(msiObjStat("*b/ho.txt", *o)); writeLine("stdout", "svcq_objstat_read_granted_object_unreadable_collection *e");
  *e = errorcode(msiDataObjOpen("objPath=*b/ho.txt++++openFlags=O_RDONLY", *rfd)); writeLine("stdout", "svcq_open_read_granted_object_unreadable_collection *e");
  *j = "{\"entity_name\": \"*b/ho.txt\", \"entity_type\": \"data_object\", \"operations\": [{\"operation\": \"add\", \"attribute\": \"pq.k\", \"value\": \"v\", \"units\": \"\"}]}";
  *e = errorcode(msi_atomic_apply_metadata_operations(*j, *out)); writeLine("stdout", "svcq_meta_read_granted_object_unreadable_collection *e");
  *e = errorcode(msiObjStat("*b/q'c", *o)); writeLine("stdout", "svcq_objstat_unreadable_quoted_collection *e");
  *e = errorcode(msiObjStat("*f/q'c", *o)); writeLine("stdout", "svcq_objstat_own_quoted_collection *e");
}
INPUT null
OUTPUT ruleExecOut
