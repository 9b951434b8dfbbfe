//! Dump files through the command line: ELF cores (written here with
//! `object`'s writer, ELF32 and ELF64, with QEMU's per-vCPU notes) and
//! LiME captures of the same memory as a raw image with holes walk alike;
//! a table in a hole is a fault, never zeros; roots and mode come from the
//! vCPU notes; `roots` finds every process directory; compaction reads
//! through the segments; bad files are one error line with status 2.
#![cfg(feature = "cli")]
// "LiME" is the format's name.
#![allow(clippy::doc_markdown)]

mod cli_support;
mod common;

use std::io::Read;
use std::path::Path;
use std::process::Output;

use common::{ImageBuilder, P, PDE_FLAGS, PS, RW, US};
use object::elf;

use cli_support::{Cpu, core, fails, ok, ptwalk, scratch, stderr, write};

const PG: u64 = 0x8005_0033;
const CR4_PSE: u64 = 0x690;

fn lime_header(s: u64, e_inclusive: u64) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(0x4C69_4D45u32.to_le_bytes());
    h.extend(1u32.to_le_bytes());
    h.extend(s.to_le_bytes());
    h.extend(e_inclusive.to_le_bytes());
    h.extend([0u8; 8]);
    h
}

/// A LiME capture: a header then the bytes, per segment, in the order given.
fn lime(segs: &[(u64, &[u8])]) -> Vec<u8> {
    let mut f = Vec::new();
    for (pa, b) in segs {
        f.extend(lime_header(*pa, pa + b.len() as u64 - 1));
        f.extend(*b);
    }
    f
}

/// Memory with holes: tables in `0..0x10000` and `0x40_0000..0x40_2000`,
/// nothing readable between (only leaf frames live there, and the walk
/// never reads those). Two spaces share a kernel table; space B has a
/// table in the high segment and a 4 MiB page. Returns the memory (holes
/// zero), its two segments, and the roots.
fn holed() -> (Vec<u8>, [(u64, u64); 2], [u32; 2]) {
    let mut img = ImageBuilder::new();
    let (a, b, kpt, upt) = (img.alloc(), img.alloc(), img.alloc(), img.alloc());
    img.put(a, 0x300, kpt | PDE_FLAGS);
    img.put(b, 0x300, kpt | PDE_FLAGS);
    img.put(kpt, 1, 0x0020_0000 | P | RW);
    img.put(kpt, 2, 0x0020_1000 | P);
    img.put(a, 0x10, upt | PDE_FLAGS);
    img.put(upt, 0, 0x0021_0000 | P | US | RW);
    img.put(upt, 1, 0x0021_1000 | P | US | 0x200);
    let high = 0x40_0000u32;
    img.put(b, 0x20, high | PDE_FLAGS);
    img.put(b, 0x2, 0x0080_0000 | P | RW | US | PS);
    let mut mem = img.buf;
    mem.resize(0x40_2000, 0);
    let t = high as usize;
    mem[t..t + 4].copy_from_slice(&(0x0040_1000u32 | P | US).to_le_bytes());
    mem[t + 8..t + 12].copy_from_slice(&(0x0022_0000u32 | P | US | RW).to_le_bytes());
    (mem, [(0, 0x10000), (0x40_0000, 0x2000)], [a, b])
}

fn seg(mem: &[u8], (pa, len): (u64, u64)) -> (u64, &[u8]) {
    (pa, &mem[pa as usize..(pa + len) as usize])
}

fn root_args(roots: &[u32]) -> Vec<String> {
    roots
        .iter()
        .flat_map(|r| ["--root".to_string(), format!("{r:#x}")])
        .collect()
}

fn run(cmd: &str, image: &str, extra: &[String]) -> Output {
    let mut args: Vec<&str> = vec![cmd, "--image", image];
    args.extend(extra.iter().map(String::as_str));
    ptwalk(&args)
}

#[test]
fn elf32_elf64_and_lime_walk_as_the_raw_image_does() {
    let dir = scratch("alike");
    let (mem, s, roots) = holed();
    let (lo, hi) = (seg(&mem, s[0]), seg(&mem, s[1]));
    let raw = write(&dir, "mem.raw", &mem);
    let files = [
        write(&dir, "c32.elf", &core(false, elf::EM_386, &[], &[lo, hi])),
        // Segments out of address order in the file.
        write(&dir, "c64.elf", &core(true, elf::EM_386, &[], &[hi, lo])),
        write(&dir, "c.lime", &lime(&[hi, lo])),
    ];
    let r = root_args(&roots);
    for extra in [
        vec![],
        vec!["--follow".to_string()],
        vec!["--format".into(), "json".into()],
    ] {
        let args = [r.clone(), extra].concat();
        let want = ok(&run("walk", &raw, &args));
        // The 4 MiB page, and a leaf of the table in the high segment.
        assert!(
            want.contains("0x800087") && want.contains("0x401005"),
            "{want}"
        );
        assert!(want.lines().count() >= 6, "{want}");
        for f in &files {
            assert_eq!(ok(&run("walk", f, &args)), want, "{f} {args:?}");
        }
    }
    let vas = [
        r.clone(),
        vec![
            "--space".into(),
            "1".into(),
            "0x8000234".into(),
            "0xc0001010".into(),
        ],
    ]
    .concat();
    let want = ok(&run("translate", &raw, &vas));
    assert!(want.contains("0x8000234\t0x401234"), "{want}");
    for f in &files {
        assert_eq!(ok(&run("translate", f, &vas)), want, "{f}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_table_in_a_hole_is_a_fault_never_zeros() {
    let dir = scratch("hole");
    let (mut mem, s, roots) = holed();
    // Space A's entry 0x30 points at a table in the hole.
    let at = roots[0] as usize + 4 * 0x30;
    mem[at..at + 4].copy_from_slice(&(0x0030_0000u32 | PDE_FLAGS).to_le_bytes());
    let (lo, hi) = (seg(&mem, s[0]), seg(&mem, s[1]));
    let raw = write(&dir, "mem.raw", &mem);
    let elf = write(&dir, "c.elf", &core(true, elf::EM_386, &[], &[lo, hi]));
    let lim = write(&dir, "c.lime", &lime(&[lo, hi]));
    let r = root_args(&roots);
    let fault = format!(
        "fault\t{:#x}\t0xc000000\t0x1\t0x300000\tout-of-bounds",
        roots[0]
    );
    assert!(
        !ok(&run("walk", &raw, &r)).contains("fault"),
        "raw holes read as zeros"
    );
    for f in [&elf, &lim] {
        let out = ok(&run("walk", f, &r));
        assert!(out.lines().any(|l| l == fault), "{f}: {out}");
    }
    // A root in a hole is refused, naming the ranges held.
    fails(
        &run("walk", &elf, &root_args(&[0x20_0000])),
        "root 0x200000 lies outside the memory of the ELF64 core (2 segments)",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn roots_and_mode_come_from_the_vcpu_notes() {
    let dir = scratch("notes");
    let (mem, s, [a, b]) = holed();
    let (lo, hi) = (seg(&mem, s[0]), seg(&mem, s[1]));
    let raw = write(&dir, "mem.raw", &mem);
    // cpu0 and cpu2 run space B (CR3 with PCD/PWT set), cpu1 space A,
    // cpu3 has paging off.
    let cpus = |cr4| {
        [
            Cpu {
                cr0: PG,
                cr3: u64::from(b) | 0x18,
                cr4,
            },
            Cpu {
                cr0: PG,
                cr3: u64::from(a),
                cr4,
            },
            Cpu {
                cr0: PG,
                cr3: u64::from(b),
                cr4,
            },
            Cpu {
                cr0: 0x11,
                cr3: 0,
                cr4: 0,
            },
        ]
    };
    for is_64 in [false, true] {
        let f = write(
            &dir,
            "c.elf",
            &core(is_64, elf::EM_386, &cpus(CR4_PSE), &[lo, hi]),
        );
        for args in [vec![], vec!["--follow".to_string()]] {
            let o = run("walk", &f, &args);
            let want = ok(&run(
                "walk",
                &raw,
                &[root_args(&[b, a]), args.clone()].concat(),
            ));
            assert_eq!(ok(&o), want, "ELF{} {args:?}", if is_64 { 64 } else { 32 });
            let err = stderr(&o);
            assert_eq!(
                err,
                format!(
                    "ptwalk: roots from the vCPUs of the ELF{} core (2 segments): {b:#x} (cpu0,cpu2) {a:#x} (cpu1); mode i686 (PSE)\n",
                    if is_64 { 64 } else { 32 }
                )
            );
        }
    }
    // CR4.PSE clear: the 4 MiB entry is a table pointer, as --no-pse says.
    let f = write(
        &dir,
        "nopse.elf",
        &core(true, elf::EM_386, &cpus(0x680), &[lo, hi]),
    );
    let o = run("walk", &f, &[]);
    assert_eq!(
        ok(&o),
        ok(&run(
            "walk",
            &raw,
            &[root_args(&[b, a]), vec!["--no-pse".into()]].concat()
        ))
    );
    assert!(ok(&o).contains("fault\t0x2000\t0x800000\t0x1\t0x800000\tout-of-bounds"));
    assert!(stderr(&o).contains("mode i686 (no PSE)"), "{}", stderr(&o));
    // translate and compact take them too.
    let f = write(
        &dir,
        "c.elf",
        &core(true, elf::EM_386, &cpus(CR4_PSE), &[lo, hi]),
    );
    let t = ok(&run(
        "translate",
        &f,
        &["--space".into(), "1".into(), "0x10000".into()],
    ));
    assert_eq!(
        t,
        ok(&run(
            "translate",
            &raw,
            &[
                root_args(&[b, a]),
                vec!["--space".into(), "1".into(), "0x10000".into()]
            ]
            .concat()
        ))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_mode_is_taken_and_missing_registers_are_one_line() {
    let dir = scratch("modes");
    let (mem, s, [a, _]) = holed();
    let segs = [seg(&mem, s[0]), seg(&mem, s[1])];
    let cpu = |cr0, cr4| {
        [Cpu {
            cr0,
            cr3: u64::from(a),
            cr4,
        }]
    };
    // PAE, 4- and 5-level vCPUs: their mode is taken (these i686 tables
    // read as such walk to whatever they say; tests/cli_modes.rs checks
    // the walks).
    for (machine, cr4, mode) in [
        (elf::EM_386, 0x6b0, "pae"),
        (elf::EM_X86_64, 0x6b0, "x86-64"),
        (elf::EM_X86_64, 0x16b0, "x86-64-la57"),
    ] {
        let f = write(&dir, "m.elf", &core(true, machine, &cpu(PG, cr4), &segs));
        let o = run("walk", &f, &["--format".into(), "count".into()]);
        ok(&o);
        assert_eq!(
            stderr(&o),
            format!(
                "ptwalk: roots from the vCPUs of the ELF64 core (2 segments): {a:#x} (cpu0); mode {mode}\n"
            )
        );
        // --no-pse is refused outside i686.
        fails(
            &run("walk", &f, &["--no-pse".into()]),
            "--no-pse is for i686 paging",
        );
    }
    let off = write(
        &dir,
        "off.elf",
        &core(true, elf::EM_386, &cpu(0x11, 0), &segs),
    );
    fails(
        &run("walk", &off, &[]),
        "has paging on (CR0.PG clear): give --root",
    );
    let hole = [Cpu {
        cr0: PG,
        cr3: 0x20_0000,
        cr4: CR4_PSE,
    }];
    let hole = write(&dir, "hole.elf", &core(true, elf::EM_386, &hole, &segs));
    fails(
        &run("walk", &hole, &[]),
        "root 0x200000 lies outside the memory of the ELF64 core",
    );
    let bare = write(&dir, "bare.elf", &core(false, elf::EM_386, &[], &segs));
    fails(
        &run("walk", &bare, &[]),
        "carries no vCPU registers (no QEMU notes): give --root",
    );
    // A raw image names no roots: clap's usage error for --root.
    let raw = write(&dir, "mem.raw", &mem);
    let o = run("walk", &raw, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("required arguments were not provided:\n  --root <PA>"),
        "{err}"
    );
    assert!(err.contains("ptwalk roots --image FILE"), "{err}");
    assert!(o.stdout.is_empty());
    let lim = write(&dir, "c.lime", &lime(&segs));
    fails(
        &run(
            "compact",
            &lim,
            &["-o".into(), dir.join("x").to_str().unwrap().into()],
        ),
        "a LiME capture carries no registers",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_files_are_one_line_and_exit_2() {
    let dir = scratch("bad");
    let (mem, s, [a, _]) = holed();
    let segs = [seg(&mem, s[0]), seg(&mem, s[1])];
    let good = core(true, elf::EM_386, &[], &segs);
    let r = root_args(&[a]);
    let check = |name: &str, bytes: &[u8], needle: &str| {
        let f = write(&dir, name, bytes);
        fails(&run("walk", &f, &r), needle);
    };
    check(
        "cut.elf",
        &good[..good.len() - 100],
        "segment 1 (PA 0x400000..0x402000) lies past the end of the file",
    );
    check(
        "header.elf",
        &good[..40],
        "is not a valid ELF core: bad header",
    );
    let mut phdrs = good.clone();
    phdrs[0x20..0x28].copy_from_slice(&0xffff_fff0u64.to_le_bytes()); // e_phoff
    check("phoff.elf", &phdrs, "bad program headers");
    let overlap = core(true, elf::EM_386, &[], &[segs[0], (0x8000, &mem[..0x2000])]);
    check(
        "overlap.elf",
        &overlap,
        "segments overlap in physical memory: 0x0..0x10000 and 0x8000..0xa000",
    );
    let absurd = core(
        true,
        elf::EM_386,
        &[],
        &[segs[0], (u64::MAX - 0xfff, &mem[..0x2000])],
    );
    check(
        "absurd.elf",
        &absurd,
        "runs past the 52-bit physical address space",
    );
    let tiny = core(false, elf::EM_386, &[], &[(0, &mem[..0x800])]);
    check(
        "tiny.elf",
        &tiny,
        "holds 2048 bytes of memory, less than one page table",
    );
    let mut exec = good.clone();
    exec[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
    check("exec.elf", &exec, "is not a core dump (ET_CORE)");
    let mut lie = lime(&segs);
    lie[16..24].copy_from_slice(&0x1_0000_0000u64.to_le_bytes()); // e_addr past the data
    check(
        "lie.lime",
        &lie,
        "claims 0x100000001 bytes but the file holds",
    );
    let mut back = lime(&segs);
    back[16..24].copy_from_slice(&0u64.to_le_bytes());
    back[8..16].copy_from_slice(&0x5000u64.to_le_bytes());
    check("back.lime", &back, "ends (0x0) before it starts (0x5000)");
    let mut junk = lime(&segs);
    junk.extend(b"garbage tail that is not a header......");
    check("junk.lime", &junk, "bad magic");
    let mut v2 = lime(&segs);
    v2[4] = 2;
    check("v2.lime", &v2, "has version 2, not 1");
    let f = write(&dir, "good.elf", &good);
    fails(
        &run(
            "walk",
            &f,
            &[r.clone(), vec!["--base".into(), "0x1000".into()]].concat(),
        ),
        "--base is for raw images",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Three processes sharing the kernel's tables (entries 768.. equal), a
/// page that looks like a lone directory, two pages that look like a
/// smaller group of directories, and random data.
fn processes() -> (Vec<u8>, [u32; 3]) {
    let mut img = ImageBuilder::new();
    let dirs = [img.alloc(), img.alloc(), img.alloc()];
    let (k1, k2) = (img.alloc(), img.alloc());
    for (n, d) in dirs.iter().enumerate() {
        img.put(*d, 0x300, k1 | P | RW | 0x20);
        img.put(*d, 0x301, 0x0040_0000 | P | RW | PS);
        img.put(*d, 0x3ff, k2 | P | RW | 0x20);
        let u = img.alloc();
        img.put(*d, 0x20 + n as u32, u | PDE_FLAGS);
        img.put(u, 3, 0x0001_0000 | P | US);
    }
    img.put(k1, 0, 0x0000_1000 | P | RW);
    img.put(k2, 0x3f0, 0xfee0_0000 | P | RW); // a device page (local APIC)
    let lone = img.alloc();
    let lpt = img.alloc();
    img.put(lone, 0x310, lpt | P | RW);
    // Two pages alike, with part of the kernel half: a smaller group than
    // the processes', and short of what --like asks (9 in 10 entries).
    for _ in 0..2 {
        let stray = img.alloc();
        img.put(stray, 0x300, k1 | P | RW | 0x20);
        img.put(stray, 0x3ff, k2 | P | RW | 0x20);
    }
    let mut x = 0x1234_5678u32;
    for _ in 0..4 {
        let junk = img.alloc();
        for i in 0..1024 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            img.put(junk, i, x);
        }
    }
    let mut mem = img.buf;
    mem.resize(0x80_0000, 0);
    (mem, dirs)
}

#[test]
fn roots_finds_every_process() {
    let dir = scratch("roots");
    let (mem, [d0, d1, d2]) = processes();
    let raw = write(&dir, "mem.raw", &mem);
    let cpus = [
        Cpu {
            cr0: PG,
            cr3: u64::from(d1),
            cr4: CR4_PSE,
        },
        Cpu {
            cr0: PG,
            cr3: u64::from(d0),
            cr4: CR4_PSE,
        },
    ];
    let f = write(
        &dir,
        "c.elf",
        &core(true, elf::EM_386, &cpus, &[(0, &mem[..])]),
    );
    let line = |r: u32, how: &str, user: u32| format!("{r:#x}\t{how}\t{user}\t3\t2");
    assert_eq!(
        ok(&ptwalk(&["roots", "--image", &f])),
        [
            line(d1, "cpu0", 1),
            line(d0, "cpu1", 1),
            line(d2, "like", 1),
            String::new()
        ]
        .join("\n")
    );
    let like = ok(&ptwalk(&[
        "roots",
        "--image",
        &raw,
        "--like",
        &format!("{d2:#x}"),
    ]));
    assert_eq!(
        like,
        [
            line(d2, "like", 1),
            line(d0, "like", 1),
            line(d1, "like", 1),
            String::new()
        ]
        .join("\n")
    );
    // With nothing known, the scan finds the three (the largest group of
    // kernel halves: not the lone directory nor the pair; random pages
    // point outside memory).
    let scan = ok(&ptwalk(&["roots", "--image", &raw]));
    assert_eq!(
        scan,
        [
            line(d0, "scan", 1),
            line(d1, "scan", 1),
            line(d2, "scan", 1),
            String::new()
        ]
        .join("\n")
    );
    let json = ok(&ptwalk(&["roots", "--image", &raw, "--format", "json"]));
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["root"], format!("{d0:#x}"));
    assert_eq!(first["how"], "scan");
    assert_eq!(first["shared"], 2);
    // --all-roots walks what roots finds, in its order.
    let all = ptwalk(&["walk", "--image", &f, "--all-roots", "--follow"]);
    let want = ok(&run(
        "walk",
        &raw,
        &[root_args(&[d1, d0, d2]), vec!["--follow".into()]].concat(),
    ));
    assert_eq!(ok(&all), want);
    assert!(
        stderr(&all)
            .contains("3 roots found in the ELF64 core (1 segment) (2 known, 1 like, 0 scan)"),
        "{}",
        stderr(&all)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn compaction_reads_through_the_segments() {
    let dir = scratch("compact");
    let (mem, [d0, d1, d2]) = processes();
    // Leaf frames everywhere in memory: split in three segments, stored
    // out of order, so every copy maps PAs to file offsets.
    let parts = [
        (0x30_0000u64, &mem[0x30_0000..]),
        (0, &mem[..0x10_0000]),
        (0x10_0000, &mem[0x10_0000..0x30_0000]),
    ];
    let raw = write(&dir, "mem.raw", &mem);
    let elf = write(&dir, "c.elf", &core(false, elf::EM_386, &[], &parts));
    let lim = write(&dir, "c.lime", &lime(&parts));
    let r = root_args(&[d0, d1, d2]);
    let compact = |input: &str, name: &str| {
        let out = dir.join(name);
        let o = run(
            "compact",
            input,
            &[
                r.clone(),
                vec!["--verify".into(), "-o".into(), out.to_str().unwrap().into()],
            ]
            .concat(),
        );
        assert!(ok(&o).contains("verify\tok"), "{}", ok(&o));
        std::fs::read(out.with_extension("img")).unwrap()
    };
    let want = compact(&raw, "raw");
    assert!(want.len() > 0x40_0000, "the 4 MiB page is copied");
    assert_eq!(compact(&elf, "elf"), want);
    assert_eq!(compact(&lim, "lime"), want);
    std::fs::remove_dir_all(dir).unwrap();
}

/// QEMU's `info tlb` (its `print_pte`), from `walk` TSV leaves of one
/// space: the leaf entry's own flags, `X` for its NX bit; PAE prints the
/// entry's NX bit with the address.
fn render_tlb(tsv: &str, space: &str, pae: bool) -> String {
    let mut s = String::new();
    for l in tsv.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f[0] != "leaf" || f[1] != space {
            continue;
        }
        let n = |i: usize| u64::from_str_radix(f[i].trim_start_matches("0x"), 16).unwrap();
        let (va, pa, size, e) = (n(2), n(3), n(4), n(5));
        let bit = |b: u32, c: char| if e & (1 << b) != 0 { c } else { '-' };
        let ps = if size > 4096 { bit(7, 'P') } else { '-' };
        let pa = if pae { pa | (e & (1 << 63)) } else { pa };
        s += &format!(
            "{va:016x}: {pa:016x} {}{}{ps}{}{}{}{}{}{}\n",
            bit(63, 'X'),
            bit(8, 'G'),
            bit(6, 'D'),
            bit(5, 'A'),
            bit(4, 'C'),
            bit(3, 'T'),
            bit(2, 'U'),
            bit(1, 'W')
        );
    }
    s
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The real guests' page-table pages (every mode) as ELF cores with
/// their vCPUs' notes: `walk --follow` with no other argument takes the
/// mode and roots from the notes and gives each vCPU's space exactly as
/// QEMU's `info tlb` printed it (the texts committed; the others' line
/// counts), and `map`, merged as QEMU merges, is its `info mem`.
#[test]
fn a_real_guest_core_alone_reproduces_qemu_info_tlb() {
    real_guest("i686", elf::EM_386, "i686 (PSE)", !0xfff);
}

#[test]
fn a_real_pae_guest_core_alone_reproduces_qemu_info_tlb() {
    real_guest("pae", elf::EM_386, "pae", !0x1f);
}

#[test]
fn a_real_4_level_pti_guest_core_alone_reproduces_qemu_info_tlb() {
    real_guest(
        "x86_64-pti",
        elf::EM_X86_64,
        "x86-64",
        0x000f_ffff_ffff_f000,
    );
}

#[test]
fn a_real_5_level_guest_core_alone_reproduces_qemu_info_tlb() {
    real_guest(
        "x86_64-la57",
        elf::EM_X86_64,
        "x86-64-la57",
        0x000f_ffff_ffff_f000,
    );
}

fn real_guest(guest: &str, machine: u16, mode: &str, root_mask: u64) {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/guests")
        .join(guest);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.join("meta.json")).unwrap()).unwrap();
    let hex = |v: &serde_json::Value| {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let vcpus: Vec<(u64, Cpu)> = meta["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                Cpu {
                    cr0: hex(&v["cr0"]),
                    cr3: hex(&v["cr3"]),
                    cr4: hex(&v["cr4"]),
                },
            )
        })
        .collect();
    assert_eq!(vcpus.len(), 4);
    let tables = gunzip(&fx.join("tables.bin.gz"));
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pages: Vec<(u64, &[u8])> = tables
        .chunks_exact(8 + 4096)
        .map(|r| (u64::from_le_bytes(r[..8].try_into().unwrap()), &r[8..]))
        .collect();
    pages.sort_by_key(|p| p.0);
    for (pa, b) in pages {
        match runs.last_mut() {
            Some((s, buf)) if *s + buf.len() as u64 == pa => buf.extend_from_slice(b),
            _ => runs.push((pa, b.to_vec())),
        }
    }
    assert!(runs.len() > 1, "{guest}: a core with holes");
    let segs: Vec<(u64, &[u8])> = runs.iter().map(|(pa, b)| (*pa, &b[..])).collect();
    let cpus: Vec<Cpu> = vcpus.iter().map(|v| v.1).collect();
    let dir = scratch(&format!("real-{guest}"));
    let f = write(&dir, "guest.elf", &core(true, machine, &cpus, &segs));
    let o = ptwalk(&["walk", "--image", &f, "--follow"]);
    let tsv = ok(&o);
    assert!(
        stderr(&o).ends_with(&format!("; mode {mode}\n")),
        "{guest}: {}",
        stderr(&o)
    );
    for (index, cpu) in &vcpus {
        let ours = render_tlb(&tsv, &format!("{:#x}", cpu.cr3 & root_mask), guest == "pae");
        assert!(ours.lines().count() > 900, "{guest} cpu{index}");
        let text = &meta["qemu_texts"][format!("cpu{index}.tlb")];
        assert_eq!(
            ours.lines().count() as u64,
            text["lines"].as_u64().unwrap(),
            "{guest} cpu{index}"
        );
        let path = fx.join(format!("cpu{index}.tlb.txt.gz"));
        if text["committed"] == true {
            let qemu = String::from_utf8(gunzip(&path)).unwrap();
            assert!(
                ours == qemu,
                "{guest} cpu{index}: our info tlb differs from QEMU's"
            );
        }
    }
    // `map`'s ranges, merged where only the PA (or the nx, cow and
    // global bits, or the page size) breaks them, are QEMU's `info mem`
    // (where it was committed).
    if !fx.join("cpu0.mem.txt.gz").exists() {
        std::fs::remove_dir_all(dir).unwrap();
        return;
    }
    let maps = ok(&ptwalk(&["map", "--image", &f, "--format", "json"]));
    for (line, (index, cpu)) in maps.lines().zip(&vcpus) {
        let space: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(space["space"], format!("{:#x}", cpu.cr3 & root_mask));
        let path = fx.join(format!("cpu{index}.mem.txt.gz"));
        if !path.exists() {
            continue;
        }
        let mut merged: Vec<(u64, u64, String)> = Vec::new();
        for r in space["ranges"].as_array().unwrap() {
            // JSON's end is exact (2^64 for the last page); QEMU's wraps.
            let end = u128::from_str_radix(&r["end"].as_str().unwrap()[2..], 16).unwrap() as u64;
            let va = hex(&r["va"]);
            let prot = r["access"].as_str().unwrap()[..3].to_string();
            match merged.last_mut() {
                Some(m) if m.1 == va && m.2 == prot => m.1 = end,
                _ => merged.push((va, end, prot)),
            }
        }
        let ours: String = merged
            .iter()
            .map(|(a, b, p)| format!("{a:016x}-{b:016x} {:016x} {p}\n", b.wrapping_sub(*a)))
            .collect();
        let qemu = String::from_utf8(gunzip(&path)).unwrap();
        assert!(space["ranges"].as_array().unwrap().len() > merged.len());
        assert!(
            ours == qemu,
            "{guest} cpu{index}: merged map differs from QEMU's info mem:\n{ours}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The kernel tables `processes` shares (allocated right after the three
/// directories).
fn kernel_tables(dirs: [u32; 3]) -> (u32, u32) {
    (dirs[2] + 0x1000, dirs[2] + 0x2000)
}

#[test]
fn tables_lists_every_shared_table_with_its_aliases() {
    let dir = scratch("tables");
    let (mem, dirs) = processes();
    let [d0, d1, d2] = dirs;
    let (k1, k2) = kernel_tables(dirs);
    let raw = write(&dir, "mem.raw", &mem);
    let r = root_args(&[d0, d1, d2]);
    let out = ok(&run("tables", &raw, &r));
    let line =
        |t: u32, va: u32| format!("{t:#x}\t1\t{d0:#x}\t{va:#x}\t{d1:#x}@{va:#x} {d2:#x}@{va:#x}");
    assert_eq!(
        out,
        format!("{}\n{}\n", line(k1, 0xc000_0000), line(k2, 0xffc0_0000))
    );
    // As many aliases as the references walk reports.
    let walk = ok(&run("walk", &raw, &r));
    let aliases = walk.lines().filter(|l| l.starts_with("alias\t")).count();
    assert_eq!(aliases, 4);
    for l in walk.lines().filter(|l| l.starts_with("alias\t")) {
        let f: Vec<&str> = l.split('\t').collect();
        assert!(
            out.contains(&format!("{}@{}", f[1], f[2])),
            "{l} not in {out}"
        );
    }
    let json = ok(&run(
        "tables",
        &raw,
        &[r.clone(), vec!["--format".into(), "json".into()]].concat(),
    ));
    let t: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(t["table"], format!("{k1:#x}"));
    assert_eq!(t["aliases"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn map_coalesces_ranges_and_names_their_owner() {
    let dir = scratch("map");
    let (mut mem, dirs) = processes();
    let [d0, d1, d2] = dirs;
    // Space d1's user table: three more pages contiguous in VA and PA
    // after its page at 0x..3000 -> 0x10000, then one elsewhere.
    let upt = u32::from_le_bytes(mem[(d1 + 4 * 0x21) as usize..][..4].try_into().unwrap()) & !0xfff;
    for (i, pa) in [(4u32, 0x11000u32), (5, 0x12000), (6, 0x13000), (7, 0x30000)] {
        let at = (upt + 4 * i) as usize;
        mem[at..at + 4].copy_from_slice(&(pa | P | US).to_le_bytes());
    }
    let raw = write(&dir, "mem.raw", &mem);
    let o = ok(&run("map", &raw, &root_args(&[d0, d1, d2])));
    let spaces: Vec<&str> = o.split("\n\n").collect();
    assert_eq!(spaces.len(), 3, "{o}");
    let lines: Vec<Vec<&str>> = spaces[1]
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["space".to_string(), format!("{d1:#x}")]);
    assert_eq!(
        lines[1],
        ["VA_START-VA_END", "SIZE", "PA", "ACCESS", "PAGE", "OWNER"]
    );
    let owner = format!("{d0:#x}");
    let want: [&[&str]; 5] = [
        &["08403000-08407000", "0x4000", "0x10000", "ur-", "4K"],
        &["08407000-08408000", "0x1000", "0x30000", "ur-", "4K"],
        &[
            "c0000000-c0001000",
            "0x1000",
            "0x1000",
            "-rw",
            "4K",
            "via",
            &owner,
            "at",
            "c0000000",
        ],
        &["c0400000-c0800000", "0x400000", "0x400000", "-rw", "4M"],
        &[
            "ffff0000-ffff1000",
            "0x1000",
            "0xfee00000",
            "-rw",
            "4K",
            "via",
            &owner,
            "at",
            "ffff0000",
        ],
    ];
    for (got, want) in lines[2..7].iter().zip(want) {
        assert_eq!(got, want, "{}", spaces[1]);
    }
    assert_eq!(
        lines[7].join(" "),
        format!(
            "summary {d1:#x}: mapped 0x407000 bytes (4124 KiB) in 5 ranges, 1 private and 2 shared tables, 2 aliases, 0 faults"
        )
    );
    assert_eq!(lines.len(), 8, "{}", spaces[1]);
    // The owner's own kernel ranges name no owner.
    assert!(!spaces[0].contains("via"), "{}", spaces[0]);
    let json = ok(&run(
        "map",
        &raw,
        &[
            root_args(&[d0, d1, d2]),
            vec!["--format".into(), "json".into()],
        ]
        .concat(),
    ));
    let s1: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
    assert_eq!(s1["space"], format!("{d1:#x}"));
    assert_eq!(s1["ranges"].as_array().unwrap().len(), 5);
    assert_eq!(s1["ranges"][2]["owner"], format!("{d0:#x}"));
    assert_eq!(s1["shared_tables"], 2);
    std::fs::remove_dir_all(dir).unwrap();
}
