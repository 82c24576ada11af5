set -x
A="runuser -u irods -- env HOME=/var/lib/irods"
$A iadmin mkuser fix_reader rodsuser
$A iadmin moduser fix_reader password fixreaderpw
$A imkdir -p /tempZone/home/rods/fix_probe
head -c 100000 /dev/urandom > ${PROBE_DIR:-/tmp/fixity-probe}/obj.bin; chmod 644 ${PROBE_DIR:-/tmp/fixity-probe}/obj.bin
for n in ok corrupt missing nochk; do $A iput -f ${PROBE_DIR:-/tmp/fixity-probe}/obj.bin /tempZone/home/rods/fix_probe/$n.bin; done
for n in ok corrupt missing; do $A ichksum /tempZone/home/rods/fix_probe/$n.bin; done
$A ichmod -r read fix_reader /tempZone/home/rods/fix_probe
$A ils -L /tempZone/home/rods/fix_probe
