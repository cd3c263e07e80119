#!/usr/bin/env python3
"""Writes the seed OVAs for test/fuzz/ova_reader_fuzz.cc into test/fuzz/corpus/ova/.

Small, deterministic archives (fixed mtimes/owners) covering ustar, pax and GNU headers,
manifests, a certificate file and hostile members. Rerun after changing it; commit the output.
"""
import hashlib
import io
import os
import sys
import tarfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fuzz", "corpus", "ova")
OVF = b'<?xml version="1.0"?>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>\n'
DISK = b"KDMV" + bytes(range(256)) * 4


def member(name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.mtime = 1700000000
    info.mode = 0o644
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write(fname, members, fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, data)
    with open(os.path.join(OUT, fname), "wb") as f:
        f.write(buf.getvalue())


def mf(alg, files):
    return "".join(f"{alg.upper()}({n})= {hashlib.new(alg, d).hexdigest()}\n"
                   for n, d in files).encode()


def main():
    os.makedirs(OUT, exist_ok=True)
    good = [("vm.ovf", OVF), ("disk1.vmdk", DISK)]
    write("ustar_sha256.ova", [member("vm.ovf", OVF), member("vm.mf", mf("sha256", good)),
                               member("disk1.vmdk", DISK)], tarfile.USTAR_FORMAT)
    write("pax_sha1_padded.ova", [member("vm.ovf", OVF),
                                  member("vm.mf", mf("sha1", good) + b" " * 60),
                                  member("disk1.vmdk", DISK)], tarfile.PAX_FORMAT)
    write("gnu_sha512_longname.ova", [member("vm.ovf", OVF), member("n" * 150 + ".vmdk", DISK),
                                      member("vm.mf", mf("sha512", good))], tarfile.GNU_FORMAT)
    write("signed_bad.ova", [member("vm.ovf", OVF), member("vm.mf", mf("sha256", good)),
                             member("vm.cert", b"SHA256(vm.mf)= 00ff\n-----BEGIN CERTIFICATE-----\n"
                                    b"MIIB\n-----END CERTIFICATE-----\n"),
                             member("disk1.vmdk", DISK)], tarfile.PAX_FORMAT)
    write("hostile.ova", [member("disk1.vmdk", DISK), member("vm.ovf", OVF),
                          member("../x", b"evil"), member("/abs", b"evil"),
                          member("lnk", kind=tarfile.SYMTYPE, link="/etc/passwd"),
                          member("hard", kind=tarfile.LNKTYPE, link="vm.ovf"),
                          member("dir/", kind=tarfile.DIRTYPE),
                          member("vm.ovf", b"dup")], tarfile.GNU_FORMAT)
    write("chunks.ova", [member("vm.ovf", OVF), member("d.vmdk.000000000", DISK[:500]),
                         member("d.vmdk.000000001", DISK[500:])], tarfile.USTAR_FORMAT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
