#!/usr/bin/env python3
"""The standard benchmark workloads of docs/BENCHMARKS.md, written as files.

For each workload NAME this writes OUTDIR/NAME.img, a raw i686 physical
image (byte i is physical address i), and OUTDIR/NAME.json with its roots
and the event counts a walk must report. The counts are computed here
from the mappings the script itself made (a small model of the two
consumers over those mappings), not copied from the documentation, so the
Rust builders in tests/common/mod.rs and the walker are checked against an
independent account of the same definitions (tests/workloads.rs).

Layout of every image: page 0 stays zero, tables are handed out one page
at a time from 0x1000 upward in the order they are first needed, and leaf
frames lie at 1 GiB and above, past the end of the image (a walk never
reads them).

These are the i686 workloads only. The PAE and x86-64 workloads of
docs/BENCHMARKS.md are built in Rust only (tests/common/mod.rs), and
tests/workloads.rs counts them with a model of its own instead.

usage: tools/gen_workloads.py OUTDIR
"""

import json
import os
import struct
import sys

PRESENT, WRITABLE, USER, ACCESSED, COW = 0x1, 0x2, 0x4, 0x20, 0x200
DIR_FLAGS = PRESENT | WRITABLE | USER | ACCESSED
PAGE = 0x1000
FRAME_BASE = 0x4000_0000  # 1 GiB: leaf frames start here
KERNEL_VA = 0xC000_0000


class Guest:
    """Physical memory under construction, plus a record of what was mapped.

    `dirs[root][pdi]` is the page table a directory entry points at;
    `ptes[pt]` maps entry index -> raw PTE. They mirror the image so the
    counts can be taken without parsing bytes back.
    """

    def __init__(self):
        self.mem = bytearray(PAGE)  # page 0: empty
        self.dirs = {}
        self.ptes = {}

    def new_page(self):
        pa = len(self.mem)
        self.mem.extend(bytes(PAGE))
        return pa

    def new_root(self):
        root = self.new_page()
        self.dirs[root] = {}
        return root

    def write(self, table, index, value):
        struct.pack_into("<I", self.mem, table + 4 * index, value)

    def page_table(self, root, pdi):
        """The page table under directory entry `pdi`, made on first use."""
        pt = self.dirs[root].get(pdi)
        if pt is None:
            pt = self.new_page()
            self.ptes[pt] = {}
            self.dirs[root][pdi] = pt
            self.write(root, pdi, pt | DIR_FLAGS)
        return pt

    def link(self, root, pdi, pt):
        """Points directory entry `pdi` of `root` at an existing table."""
        self.dirs[root][pdi] = pt
        self.write(root, pdi, pt | DIR_FLAGS)

    def map_pages(self, root, va, count, frame, user):
        """Maps `count` 4 KiB pages from `va` to consecutive frames.

        User pages: every eighth one (the 8th, 16th, ... of the call) is
        copy-on-write, read-only with bit 9 set; the rest are writable.
        Kernel pages are all writable.
        """
        for n in range(count):
            v = va + n * PAGE
            pt = self.page_table(root, v >> 22)
            flags = PRESENT | ACCESSED
            if user:
                flags |= USER
                flags |= COW if n % 8 == 7 else WRITABLE
            else:
                flags |= WRITABLE
            pte = ((frame + n * PAGE) & 0xFFFF_F000) | flags
            self.ptes[pt][(v >> 12) & 0x3FF] = pte
            self.write(pt, (v >> 12) & 0x3FF, pte)

    def counts(self, roots):
        """What the references and follow consumers report for `roots`.

        Walk order: roots as given, then directory entries ascending. The
        first reach of a page table owns it; a later reach is an alias.
        """
        owned = set()
        leaves_refs = aliases = leaves_follow = 0
        for root in roots:
            for pdi in sorted(self.dirs[root]):
                pt = self.dirs[root][pdi]
                n = len(self.ptes[pt])
                leaves_follow += n
                if pt in owned:
                    aliases += 1
                else:
                    owned.add(pt)
                    leaves_refs += n
        return {
            "leaves_references": leaves_refs,
            "aliases": aliases,
            "leaves_followed": leaves_follow,
            "invalid": 0,
            "faults": 0,
        }

    def mapped(self, root, va):
        pt = self.dirs[root].get(va >> 22)
        return pt is not None and ((va >> 12) & 0x3FF) in self.ptes[pt]


def lcg(seed):
    """64-bit LCG (Knuth's MMIX constants); yields the high 31 bits."""
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield state >> 33


def dense1():
    """One space mapping all of 4 GiB with 4 KiB user pages."""
    g = Guest()
    root = g.new_root()
    g.map_pages(root, 0, 1 << 20, FRAME_BASE, user=True)
    return g, [root]


def kshared16():
    """Sixteen processes sharing the kernel half's 256 page tables."""
    g = Guest()
    roots = [g.new_root() for _ in range(16)]
    g.map_pages(roots[0], KERNEL_VA, 256 * 1024, FRAME_BASE, user=False)
    for root in roots[1:]:
        for pdi in range(KERNEL_VA >> 22, 1024):
            g.link(root, pdi, g.dirs[roots[0]][pdi])
    for i, root in enumerate(roots):
        frames = FRAME_BASE + 0x1000_0000 + i * 0x0100_0000
        g.map_pages(root, 0x0800_0000, 4096, frames, user=True)  # 16 MiB
        g.map_pages(root, 0xBFFF_0000, 16, frames + 0x0080_0000, user=True)
    return g, roots


def sparse1():
    """64 single pages, each under its own directory entry."""
    g = Guest()
    root = g.new_root()
    rng = lcg(1)
    taken = set()
    while len(taken) < 64:
        pdi = next(rng) % 1024
        if pdi in taken:
            continue
        taken.add(pdi)
        va = (pdi << 22) | ((next(rng) % 1024) << 12)
        g.map_pages(root, va, 1, FRAME_BASE + (len(taken) - 1) * PAGE, user=True)
    return g, [root]


V2P_SPACE = 7
V2P_PROBES = 4096


def v2p(g, roots):
    """The v2p probe list: 4096 page VAs from an LCG seeded with 7."""
    rng = lcg(7)
    vas = [(next(rng) % (1 << 20)) << 12 for _ in range(V2P_PROBES)]
    mapped = sum(1 for va in vas if g.mapped(roots[V2P_SPACE], va))
    return {"space": V2P_SPACE, "vas": [hex(va) for va in vas], "mapped": mapped}


WORKLOADS = [("dense1", dense1), ("kshared16", kshared16), ("sparse1", sparse1)]


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: gen_workloads.py OUTDIR\n")
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    for name, build in WORKLOADS:
        g, roots = build()
        meta = {"mode": "i686", "roots": [hex(r) for r in roots], **g.counts(roots)}
        if name == "kshared16":
            meta["v2p"] = v2p(g, roots)
        with open(os.path.join(out, name + ".img"), "wb") as f:
            f.write(g.mem)
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        print(f"{name}: {len(g.mem)} bytes, {len(roots)} roots")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
