main {
  *f = "FIXTURE";
  *e = errorcode(msiCollCreate("*f/privsub", "1", *s)); writeLine("stdout", "fixture_privsub *e");
  *e = errorcode(msiDataObjCreate("*f/private.txt", "forceFlag=", *fd)); writeLine("stdout", "fixture_private *e");
  *e = errorcode(msiDataObjWrite(*fd, "svc private!\n", *len)); writeLine("stdout", "fixture_private_write *e");
  *e = errorcode(msiDataObjClose(*fd, *s)); writeLine("stdout", "fixture_private_close *e");
  *e = errorcode(msiDataObjCreate("*f/readable.txt", "forceFlag=", *fd2)); writeLine("stdout", "fixture_readable *e");
  *e = errorcode(msiDataObjWrite(*fd2, "svc readable\n", *len)); writeLine("stdout", "fixture_readable_write *e");
  *e = errorcode(msiDataObjClose(*fd2, *s)); writeLine("stdout", "fixture_readable_close *e");
  *j = "{\"entity_name\": \"*f/private.txt\", \"entity_type\": \"data_object\", \"operations\": [{\"operation\": \"add\", \"attribute\": \"probe10.k\", \"value\": \"v\", \"units\": \"\"}]}";
  *e = errorcode(msi_atomic_apply_metadata_operations(*j, *out)); writeLine("stdout", "fixture_avu *e");
  *e = errorcode(msiSetACL("default", "read", "ADMIN", "*f/readable.txt")); writeLine("stdout", "fixture_grant *e");
}
INPUT null
OUTPUT ruleExecOut
