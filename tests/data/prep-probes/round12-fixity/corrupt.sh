# Round 12 fixity probe, step 2 (as root on the server host, after setup.sh): one replica changed, one gone.
set -e
V=/var/lib/irods/Vault/home/rods/fix_probe
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[500]^=0xFF; open(p,'wb').write(b)" "$V/corrupt.bin"
rm "$V/missing.bin"
