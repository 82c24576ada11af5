probe_fixity {
  foreach (*n in list("ok", "corrupt", "missing", "nochk")) {
    foreach (*o in list("", "verifyChksum=", "ChksumAll=++++verifyChksum=", "forceChksum=")) {
      *p = "/tempZone/home/rods/fix_probe/" ++ *n ++ ".bin";
      *out = "";
      *e = errorcode(msiDataObjChksum(*p, *o, *out));
      writeLine("stdout", "check name=*n opts=*o errorcode=*e out=*out");
    }
  }
}
INPUT null
OUTPUT ruleExecOut
