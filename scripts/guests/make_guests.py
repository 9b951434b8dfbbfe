#!/usr/bin/env python3
"""Boot real Debian Linux guests under QEMU (TCG), pause them, and take
their memory plus QEMU's own view of their page tables.

For each guest: build a tiny busybox initramfs whose /init starts busy loops
and sleepers (several address spaces), boot a Debian kernel on -smp 4, wait
for a marker on the serial console, then over QMP: stop, and per vCPU
`info registers`, `info tlb`, `info mem`; `pmemsave` of all RAM (byte i =
PA i) and `dump-guest-memory` (ELF) of the same paused state.

From the raw image it walks the page tables from every vCPU root (plus the
PTI twin root on x86-64) and writes a small extract of the table pages only
(tables.bin.gz: records of u64 LE physical address + 4096 bytes), meta.json
and the gzip'd monitor texts to tests/fixtures/guests/<name>/.

Standard library only. Run as root (it installs what it needs with apt).
See README.md beside this file.
"""

import argparse
import datetime
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

# name -> how to build and boot it
GUESTS = {
    "i686": dict(
        arch="i386",
        kernel_pkg="linux-image-686:i386",
        qemu="qemu-system-i386",
        cpu="qemu32",
        mem_mb=128,
        append="",
        mode="i686",
    ),
    "pae": dict(
        arch="i386",
        kernel_pkg="linux-image-686-pae:i386",
        qemu="qemu-system-i386",
        cpu="qemu32,+pae,+nx",
        mem_mb=128,
        append="",
        mode="pae",
    ),
    "x86_64-pti": dict(
        arch="amd64",
        kernel_pkg="linux-image-amd64",
        qemu="qemu-system-x86_64",
        cpu="Haswell",
        mem_mb=256,
        append="pti=on no5lvl",
        mode="x86_64",
        texts="first",
    ),
    "x86_64-la57": dict(
        arch="amd64",
        kernel_pkg="linux-image-amd64",
        qemu="qemu-system-x86_64",
        cpu="max,+la57",
        mem_mb=256,
        append="pti=off",
        mode="x86_64",
        # QEMU's mem_info_la57 tests PDPT and PD entries for presence the
        # wrong way round (it descends the absent ones), so `info mem` runs
        # for hours and prints nonsense: not taken.
        info_mem=False,
        texts="first",
    ),
}

MARKER = "PTWALK-GUEST-READY"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def run(cmd, **kw):
    log("$", " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


# --------------------------------------------------------------------------
# Installing and fetching


def install_tools():
    need = [t for t in ("qemu-system-i386", "qemu-system-x86_64") if not shutil.which(t)]
    if not need:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "qemu-system-x86"], env=env)


def native_arch():
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()


def ensure_arch(arch):
    if arch == native_arch():
        return
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    if arch not in foreign:
        run(["dpkg", "--add-architecture", arch])
        run(["apt-get", "update", "-q"])


def resolve_pkg(pkg):
    """A metapackage (linux-image-686) -> the versioned image it depends on."""
    for attempt in range(2):
        out = subprocess.run(["apt-cache", "depends", pkg], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*Depends:\s*(linux-image-[0-9]\S*)", line)
            if m:
                return m.group(1)
        if attempt == 0:
            run(["apt-get", "update", "-q"])  # stale or missing package lists
    raise SystemExit("no kernel image found behind %s in the archive" % pkg)


def download(pkg, dest):
    """apt-get download `pkg` into dest (cached), unpack it, return the unpack dir."""
    os.makedirs(dest, exist_ok=True)
    name, _, arch = pkg.partition(":")
    pattern = os.path.join(dest, "%s_*_%s.deb" % (name, arch or native_arch()))
    debs = glob.glob(pattern)
    if not debs:
        # _apt cannot write to root-owned dirs: apt warns and downloads as root.
        try:
            run(["apt-get", "download", "-q", pkg], cwd=dest)
        except subprocess.CalledProcessError:
            run(["apt-get", "update", "-q"])  # stale or missing package lists
            run(["apt-get", "download", "-q", pkg], cwd=dest)
        debs = glob.glob(pattern)
    deb = sorted(debs)[-1]
    unpack = deb[:-4] + ".d"
    if not os.path.isdir(unpack):
        run(["dpkg-deb", "-x", deb, unpack])
    return deb, unpack


# --------------------------------------------------------------------------
# The initramfs (newc cpio, written here: no root or mknod needed)

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /tmp /dev
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "uname: $(uname -a)"
# Several address spaces: busy loops (one per vCPU and more) and sleepers.
for i in 1 2 3 4 5 6; do busybox sh -c 'while :; do :; done' & done
for i in 1 2 3; do busybox sleep 1000000 & done
sleep 5
ps
echo "cpu: $(grep -m1 flags /proc/cpuinfo)"
echo "meminfo: $(grep -E 'MemTotal' /proc/meminfo)"
echo %s
exec busybox sleep 1000000000
""" % MARKER


def cpio_newc(entries):
    """entries: (name, mode, data or None, rdev (major, minor))."""
    out = bytearray()
    ino = 1
    for name, mode, data, rdev in entries + [("TRAILER!!!", 0, b"", (0, 0))]:
        data = data or b""
        nm = name.encode() + b"\0"
        hdr = "070701" + "".join(
            "%08X" % v
            for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nm), 0)
        )
        out += hdr.encode() + nm
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return bytes(out)


def build_initramfs(busybox_bin, path):
    with open(busybox_bin, "rb") as f:
        bb = f.read()
    d, r, c = 0o040755, 0o100755, 0o020600
    entries = [
        ("bin", d, None, (0, 0)),
        ("dev", d, None, (0, 0)),
        ("dev/console", c, None, (5, 1)),
        ("dev/null", 0o020666, None, (1, 3)),
        ("proc", d, None, (0, 0)),
        ("sys", d, None, (0, 0)),
        ("tmp", d, None, (0, 0)),
        ("bin/busybox", r, bb, (0, 0)),
        ("bin/sh", 0o120777, b"busybox", (0, 0)),
        ("init", r, INIT.encode(), (0, 0)),
    ]
    with gzip.open(path, "wb") as f:
        f.write(cpio_newc(entries))


# --------------------------------------------------------------------------
# QMP


class Qmp:
    def __init__(self, path, timeout=120):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.f = self.s.makefile("rwb")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP closed")
            msg = json.loads(line)
            if "event" in msg:
                continue
            return msg

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        r = self._read()
        if "error" in r:
            raise RuntimeError("%s: %s" % (name, r["error"]))
        return r["return"]

    def hmp(self, line, cpu=None):
        a = {"command-line": line}
        if cpu is not None:
            a["cpu-index"] = cpu
        return self.cmd("human-monitor-command", **a).replace("\r\n", "\n")


# --------------------------------------------------------------------------
# Page-table walks over the raw image (tables only)

PS = 1 << 7


def regs_of(text):
    """CR0/CR2/CR3/CR4/EFER out of `info registers`."""
    r = {}
    for k in ("CR0", "CR2", "CR3", "CR4", "EFER"):
        m = re.search(r"\b%s=([0-9a-fA-F]+)" % k, text)
        if m:
            r[k.lower()] = int(m.group(1), 16)
    return r


class PageMem:
    """Only the extracted pages: what the fixture holds."""

    def __init__(self, pages):
        self.pages = pages

    def page(self, pa):
        return self.pages.get(pa)


class Mem:
    def __init__(self, raw):
        self.raw = raw

    def page(self, pa):
        if pa + 4096 > len(self.raw):
            return None
        return self.raw[pa : pa + 4096]


def walk(mode, mem, root, cr4, tables, leaves, faults, maxphy=52):
    """Collects table pages (PA of each 4 KiB page read) into `tables` and
    leaves (va, pa, size_log2, entry) into `leaves`."""
    if mode == "i686":
        pse = bool(cr4 & (1 << 4))
        pd = root & ~0xFFF
        page = mem.page(pd)
        if page is None:
            faults.append(("root", pd))
            return
        tables.add(pd)
        for i, e in enumerate(struct.unpack("<1024I", page)):
            if not e & 1:
                continue
            va = i << 22
            if pse and e & PS:
                pa = (e & 0xFFC00000) | (((e >> 13) & 0xFF) << 32)
                leaves.append((va, pa, 22, e, e & 7))
                continue
            pt = e & 0xFFFFF000
            ptp = mem.page(pt)
            if ptp is None:
                faults.append((va, pt))
                continue
            tables.add(pt)
            for j, p in enumerate(struct.unpack("<1024I", ptp)):
                if p & 1:
                    leaves.append((va | j << 12, p & 0xFFFFF000, 12, p, p & e & 7))
        return
    amask = ((1 << maxphy) - 1) & ~0xFFF
    if mode == "pae":
        pdpt = root & 0xFFFFFFE0
        page = mem.page(pdpt & ~0xFFF)
        if page is None:
            faults.append(("root", pdpt))
            return
        tables.add(pdpt & ~0xFFF)
        off = pdpt & 0xFFF
        top = [(i << 30, e) for i, e in enumerate(struct.unpack("<4Q", page[off : off + 32]))]
        levels = [(30, False), (21, True), (12, None)]
        start_level = 1
    else:
        la57 = bool(cr4 & (1 << 12))
        levels = ([(48, False)] if la57 else []) + [(39, False), (30, True), (21, True), (12, None)]
        pml = root & amask
        page = mem.page(pml)
        if page is None:
            faults.append(("root", pml))
            return
        tables.add(pml)
        sh = levels[0][0]
        top = [(i << sh, e) for i, e in enumerate(struct.unpack("<512Q", page))]
        start_level = 1

    def descend(entries, li, prot):
        shift, ps_ok = levels[li - 1]
        for va, e in entries:
            # PAE's PDPTEs carry no U/W: the path's protection starts below.
            p = prot & e if not (mode == "pae" and li == 1) else prot
            if not e & 1:
                continue
            if ps_ok and e & PS:
                pa = e & amask & ~((1 << shift) - 1)
                leaves.append((va, pa, shift, e, p & 7))
                continue
            if ps_ok is None:
                leaves.append((va, e & amask, 12, e, p & 7))
                continue
            t = e & amask
            tp = mem.page(t)
            if tp is None:
                faults.append((va, t))
                continue
            tables.add(t)
            nsh = levels[li][0]
            descend([(va | i << nsh, x) for i, x in enumerate(struct.unpack("<512Q", tp))], li + 1, p)

    descend(top, start_level, 7)


def canonical(mode, cr4, va):
    """QEMU's addr_canonical: sign-extends in 64-bit modes only."""
    if mode != "x86_64":
        return va
    bits = 57 if cr4 & (1 << 12) else 48
    if va & (1 << (bits - 1)):
        va |= ~((1 << bits) - 1) & 0xFFFFFFFFFFFFFFFF
    return va


def render_tlb(mode, cr4, leaves):
    """QEMU's `info tlb` text, recomputed from our own walk (checks the
    extract; the Rust test renders it from ptwalk's walk)."""
    out = []
    for va, pa, shift, e, _ in leaves:
        if shift == 12:
            e &= ~PS  # a PTE's bit 7 is PAT: QEMU clears it
        if mode == "i686":
            col = e & (0xFFE00000 if shift > 12 else 0xFFFFF000)
        elif mode == "pae":  # QEMU keeps bits 52..63 (NX) in the column
            col = e & ~((1 << 20) - 1 if shift > 12 else 0xFFF) & 0xFFFFFFFFFFFFFFFF
        else:
            col = e & {30: 0x3FFFFC0000000, 21: 0x3FFFFFFE00000, 12: 0x3FFFFFFFFF000}[shift]
        flags = "".join(c if e & (1 << b) else "-" for b, c in
                        ((63, "X"), (8, "G"), (7, "P"), (6, "D"), (5, "A"), (4, "C"), (3, "T"), (2, "U"), (1, "W")))
        out.append("%016x: %016x %s" % (canonical(mode, cr4, va), col, flags))
    return "".join(l + "\n" for l in out)


def render_mem(mode, cr4, leaves):
    """QEMU's `info mem`: equal-protection ranges (U/W ANDed along the path)."""
    out, cur = [], None
    c = lambda v: canonical(mode, cr4, v)
    for va, _, shift, _, prot in leaves:
        if cur and cur[1] == va and cur[2] == prot:
            cur[1] += 1 << shift
            continue
        if cur:
            out.append(cur)
        cur = [va, va + (1 << shift), prot]
    if cur:
        out.append(cur)
    return "".join("%016x-%016x %016x %sr%s\n" % (c(a), c(b), c(b - a), "u" if p & 4 else "-", "w" if p & 2 else "-")
                   for a, b, p in out)


# --------------------------------------------------------------------------
# One guest


def boot_and_dump(name, g, out, cache, settle):
    gdir = os.path.join(out, name)
    os.makedirs(gdir, exist_ok=True)
    ensure_arch(g["arch"])
    kpkg = resolve_pkg(g["kernel_pkg"])
    _, kdir = download(kpkg, cache)
    vmlinuz = sorted(glob.glob(os.path.join(kdir, "boot", "vmlinuz-*")))[0]
    kver = os.path.basename(vmlinuz)[len("vmlinuz-") :]
    _, bdir = download("busybox-static:" + g["arch"], cache)
    initrd = os.path.join(gdir, "initramfs.cpio.gz")
    build_initramfs(os.path.join(bdir, "bin", "busybox"), initrd)

    serial = os.path.join(gdir, "serial.log")
    qmp_path = os.path.join(gdir, "qmp.sock")
    for p in [serial, qmp_path] + glob.glob(os.path.join(gdir, "cpu*.txt")):
        if os.path.exists(p):
            os.unlink(p)
    append = "console=ttyS0 panic=-1 " + g["append"]
    cmd = [
        g["qemu"], "-accel", "tcg", "-machine", "pc", "-cpu", g["cpu"], "-smp", "4",
        "-m", "%dM" % g["mem_mb"], "-kernel", vmlinuz, "-initrd", initrd,
        "-append", append.strip(), "-display", "none", "-nodefaults", "-no-reboot",
        "-serial", "file:" + serial, "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
    ]
    log("booting", name, kver)
    t0 = time.time()
    qemu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    qemu_log = os.path.join(gdir, "qemu.log")
    try:
        qmp = Qmp(qmp_path)
        text = ""
        while MARKER not in text:
            if qemu.poll() is not None:
                raise RuntimeError("qemu exited: %s" % qemu.stdout.read().decode(errors="replace"))
            if time.time() - t0 > 1200:
                raise RuntimeError("no marker after 20 minutes; see " + serial)
            time.sleep(1)
            if os.path.exists(serial):
                with open(serial, errors="replace") as f:
                    text = f.read()
        boot_s = time.time() - t0
        log("marker after %.0f s; settling %d s" % (boot_s, settle))
        time.sleep(settle)
        t1 = time.time()
        qmp.cmd("stop")
        ncpu = len(qmp.cmd("query-cpus-fast"))
        vcpus = []
        for n in range(ncpu):
            regs = qmp.hmp("info registers", cpu=n)
            tlb = qmp.hmp("info tlb", cpu=n)
            kinds = [("registers", regs), ("tlb", tlb)]
            if g.get("info_mem", True):
                kinds.append(("mem", qmp.hmp("info mem", cpu=n)))
            for kind, t in kinds:
                with open(os.path.join(gdir, "cpu%d.%s.txt" % (n, kind)), "w") as f:
                    f.write(t)
            vcpus.append(dict(index=n, **regs_of(regs)))
        size = g["mem_mb"] << 20
        raw = os.path.join(gdir, "ram.raw")
        elf = os.path.join(gdir, "ram.elf")
        qmp.cmd("pmemsave", val=0, size=size, filename=raw)
        qmp.cmd("dump-guest-memory", paging=False, protocol="file:" + elf)
        dump_s = time.time() - t1
        version = qmp.cmd("query-version")
        qmp.cmd("quit")
    finally:
        try:
            qemu.wait(timeout=30)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
        with open(qemu_log, "wb") as f:
            f.write(qemu.stdout.read() or b"")
    qv = version["qemu"]
    info = dict(
        name=name,
        kernel_package=kpkg,
        kernel_version=kver,
        qemu_version=("%d.%d.%d (%s)" % (qv["major"], qv["minor"], qv["micro"], version["package"].strip())
                      if version.get("package", "").strip() else "%d.%d.%d" % (qv["major"], qv["minor"], qv["micro"])),
        qemu_command=cmd,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        memory_bytes=size,
        boot_seconds=round(boot_s, 1),
        dump_seconds=round(dump_s, 1),
        vcpus=vcpus,
        raw=raw,
        elf=elf,
    )
    m = re.search(r"uname: (.*)", text)
    if m:
        info["uname"] = m.group(1).strip()
    with open(os.path.join(gdir, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def extract(name, g, info, fixtures):
    gdir = os.path.dirname(info["raw"])
    with open(info["raw"], "rb") as f:
        mem = Mem(f.read())
    mode = g["mode"]
    roots = []  # (root, from)
    with open(os.path.join(gdir, "serial.log"), errors="replace") as f:
        pti = "page tables isolation: enabled" in f.read()
    own = {}  # vCPU -> its CR3's root
    for v in info["vcpus"]:
        cr3 = v["cr3"]
        if mode == "i686":
            r = [cr3 & ~0xFFF]
        elif mode == "pae":
            r = [cr3 & 0xFFFFFFE0]
        else:
            r = [cr3 & ((1 << 52) - 1) & ~0xFFF]
        own[v["index"]] = r[0]
        if pti and r[0] & 0xFFF == 0:
            # PTI: an 8 KiB PGD, the kernel's half first, the user's in the
            # next 4 KiB page; a vCPU's CR3 is one of them, list both.
            base = r[0] & ~0x1FFF
            r = [base, base | 0x1000]
        for x in r:
            if x not in [y for y, _ in roots]:
                roots.append((x, v["index"]))
    cr4 = info["vcpus"][0]["cr4"]
    tables, faults = set(), []
    per_root = []
    big, small = set(), set()
    for root, _ in roots:
        t, leaves = set(), []
        walk(mode, mem, root, cr4, t, leaves, faults)
        tables |= t
        for va, pa, sl, e, _ in leaves:
            if sl == 12:
                small.add(pa >> 12)
            else:
                big.update(range(pa >> 12, (pa + (1 << sl)) >> 12))
        per_root.append(dict(root="0x%x" % root, tables=len(t), leaves=len(leaves)))
    both = len(big & small)
    # The extract alone must reproduce QEMU's text for every vCPU.
    ext = PageMem({pa: mem.page(pa) for pa in tables})
    mismatches = []
    for v in info["vcpus"]:
        leaves, f2 = [], []
        walk(mode, ext, own[v["index"]], v["cr4"], set(), leaves, f2)
        for kind, render in (("tlb", render_tlb), ("mem", render_mem)):
            path = os.path.join(gdir, "cpu%d.%s.txt" % (v["index"], kind))
            if not os.path.exists(path):
                continue
            with open(path) as f:
                qemu_text = f.read()
            if render(mode, v["cr4"], leaves) != qemu_text or f2:
                mismatches.append("cpu%d.%s" % (v["index"], kind))
    log("%s: the extract %s QEMU's text%s" % (name, "reproduces" if not mismatches else "DOES NOT reproduce",
                                              "" if not mismatches else ": " + ", ".join(mismatches)))
    fdir = os.path.join(fixtures, name)
    os.makedirs(fdir, exist_ok=True)
    with gzip.GzipFile(os.path.join(fdir, "tables.bin.gz"), "wb", mtime=0) as f:
        for pa in sorted(tables):
            f.write(struct.pack("<Q", pa) + mem.page(pa))
    # QEMU's texts: every vCPU's, or (x86-64, where the ESPFIX area alone
    # is 65536 lines per vCPU) vCPU 0's; sha256 and line count of all.
    texts = {}
    for old in glob.glob(os.path.join(fdir, "cpu*.txt.gz")):
        os.unlink(old)
    for v in info["vcpus"]:
        i = v["index"]
        for kind in ("tlb", "mem", "registers"):
            src = os.path.join(gdir, "cpu%d.%s.txt" % (i, kind))
            if not os.path.exists(src):
                continue
            with open(src, "rb") as s:
                data = s.read()
            if kind != "registers":
                texts["cpu%d.%s" % (i, kind)] = dict(
                    sha256=hashlib.sha256(data).hexdigest(), lines=data.count(b"\n"),
                    committed=g.get("texts", "all") == "all" or i == 0)
            if g.get("texts", "all") == "all" or i == 0 or kind == "registers":
                with gzip.GzipFile(os.path.join(fdir, "cpu%d.%s.txt.gz" % (i, kind)), "wb", mtime=0) as d:
                    d.write(data)
    meta = dict(
        name=name,
        mode=mode,
        pti=pti,
        kernel_package=info["kernel_package"],
        kernel_version=info["kernel_version"],
        uname=info.get("uname"),
        qemu_version=info["qemu_version"],
        qemu_command=[os.path.basename(x) if x.startswith("/") else x for x in info["qemu_command"]],
        date=info["date"],
        memory_bytes=info["memory_bytes"],
        vcpus=[
            {k: ("0x%x" % v[k] if k != "index" else v[k]) for k in ("index", "cr0", "cr3", "cr4", "efer") if k in v}
            for v in info["vcpus"]
        ],
        roots=[dict(pa="0x%x" % r, first_vcpu=i) for r, i in roots],
        per_root=per_root,
        table_pages=len(tables),
        tables_format="gzip of records: u64 little-endian physical address, then the 4096 bytes of that page",
        faults=[[str(a), "0x%x" % b] for a, b in faults],
        qemu_texts=texts,
        extract_reproduces_qemu_text=not mismatches,
        mismatches=mismatches,
        frames_under_large_and_4k_pages=both,
        frames_under_large_pages=len(big),
        frames_under_4k_pages=len(small),
    )
    with open(os.path.join(fdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(fdir, "*")))
    log("%s: %d roots, %d table pages, %d faults, fixture %d bytes, frames under both large and 4K pages: %d"
        % (name, len(roots), len(tables), len(faults), total, both))
    return meta, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("guests", nargs="*", default=list(GUESTS), help="default all: " + ", ".join(GUESTS))
    ap.add_argument("--out", default=os.path.join(REPO, "guests-out"), help="dumps (outside git)")
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures", "guests"))
    ap.add_argument("--settle", type=int, default=10, help="seconds to wait after the marker")
    ap.add_argument("--extract-only", action="store_true", help="re-extract from an earlier run's dumps")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    cache = os.path.join(out, "debs")
    if not a.extract_only:
        install_tools()
    for name in a.guests:
        g = GUESTS[name]
        if a.extract_only:
            with open(os.path.join(out, name, "info.json")) as f:
                info = json.load(f)
        else:
            info = boot_and_dump(name, g, out, cache, a.settle)
        extract(name, g, info, a.fixtures)
    write_out_readme(out, a.fixtures)


def write_out_readme(out, fixtures):
    """guests-out/README.md: where every guest's full dumps are."""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("# guests-out\n\nFull dumps written by scripts/guests/make_guests.py (not in git).\n\n")
        for info_path in sorted(glob.glob(os.path.join(out, "*", "info.json"))):
            with open(info_path) as i:
                info = json.load(i)
            name = info["name"]
            mpath = os.path.join(fixtures, name, "meta.json")
            pages = json.load(open(mpath))["table_pages"] if os.path.exists(mpath) else "?"
            total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(fixtures, name, "*")))
            f.write("## %s\n\n- kernel %s, QEMU %s, %s\n- raw (byte i = PA i, %d bytes): %s\n"
                    "- ELF (dump-guest-memory, paging=false): %s\n- monitor text: %s/cpuN.{registers,tlb,mem}.txt\n"
                    "- boot to marker %.1f s, stop and dump %.1f s\n- fixture: %s table pages, %d bytes\n\n"
                    % (name, info["kernel_version"], info["qemu_version"], info["date"], info["memory_bytes"],
                       info["raw"], info["elf"], os.path.dirname(info["raw"]), info["boot_seconds"],
                       info["dump_seconds"], pages, total))

if __name__ == "__main__":
    sys.exit(main())
