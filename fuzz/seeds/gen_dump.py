#!/usr/bin/env python3
"""Writes the `dump` target's seeds (seeds/dump/): small ELF cores and LiME
captures. Each seed is the target's 9-byte prefix (byte 0 bit 0: base
given; bytes 1-8: the base) followed by the file. Run from fuzz/seeds/."""

import struct

PAGE = bytes((i * 7) & 0xFF for i in range(4096))
NO_BASE = bytes(9)


def qemu_note(cr0, cr3, cr4):
    """A `QEMU` note: QEMUCPUState version 1, 0x1b8 bytes, CR0..CR4 at 392."""
    desc = bytearray(0x1B8)
    struct.pack_into("<II", desc, 0, 1, 0x1B8)
    for n, v in ((0, cr0), (3, cr3), (4, cr4)):
        struct.pack_into("<Q", desc, 392 + 8 * n, v)
    return struct.pack("<III", 5, len(desc), 0) + b"QEMU\0\0\0\0" + bytes(desc)


def core(bits, loads, notes=b""):
    """An x86 ELF core: an optional PT_NOTE, then one PT_LOAD per (pa, bytes)."""
    ehsize, phsize = (64, 56) if bits == 64 else (52, 32)
    phnum = len(loads) + (1 if notes else 0)
    off = ehsize + phnum * phsize
    body, phdrs = b"", b""

    def phdr(ptype, offset, pa, size, align):
        if bits == 64:
            return struct.pack("<IIQQQQQQ", ptype, 0, offset, 0, pa, size, size, align)
        return struct.pack("<IIIIIIII", ptype, offset, 0, pa, size, size, 0, align)

    if notes:
        phdrs += phdr(4, off, 0, len(notes), 4)
        body += notes
    for pa, b in loads:
        phdrs += phdr(1, off + len(body), pa, len(b), 0)
        body += b
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1, 1]) + bytes(9)
    machine = 62 if bits == 64 else 3
    if bits == 64:
        eh = ident + struct.pack("<HHIQQQIHHHHHH", 4, machine, 1, 0, ehsize, 0, 0,
                                 ehsize, phsize, phnum, 64, 0, 0)
    else:
        eh = ident + struct.pack("<HHIIIIIHHHHHH", 4, machine, 1, 0, ehsize, 0, 0,
                                 ehsize, phsize, phnum, 40, 0, 0)
    return eh + phdrs + body


def lime(ranges):
    out = b""
    for pa, b in ranges:
        out += struct.pack("<IIQQQ", 0x4C694D45, 1, pa, pa + len(b) - 1, 0) + b
    return out


SEEDS = {
    "lime_one": NO_BASE + lime([(0x1000, PAGE)]),
    # Adjacent in PA but a header apart in the file: two segments.
    "lime_two": NO_BASE + lime([(0, PAGE), (0x1000, PAGE)]),
    "elf64_load": NO_BASE + core(64, [(0x10_0000, PAGE)]),
    "elf32_load": NO_BASE + core(32, [(0x10_0000, PAGE)]),
    # Two PT_LOADs back to back in PA and file (merged), one vCPU.
    "elf64_qemu": NO_BASE + core(64, [(0, PAGE[:2048]), (0x800, PAGE[:2048] * 2)],
                                 qemu_note(0x8005_0033, 0x1000, 0x20)),
    "elf32_qemu": NO_BASE + core(32, [(0x2000, PAGE)],
                                 qemu_note(0x8005_0033, 0x2000, 0x10)),
    # The PT_LOAD runs past the end of the file.
    "elf64_truncated": NO_BASE + core(64, [(0x10_0000, PAGE)])[:2048],
    "raw_base": b"\x01" + struct.pack("<Q", 0xFFFF_F000) + PAGE[:256],
}

for name, data in SEEDS.items():
    with open(f"dump/{name}", "wb") as f:
        f.write(data)
