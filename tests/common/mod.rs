//! Test support shared by the integration tests and the benchmarks: an
//! i686 image builder, the standard workloads of docs/BENCHMARKS.md (the
//! same images `tools/gen_workloads.py` writes, checked by
//! tests/workloads.rs), the quickcheck configuration every property uses
//! ([`qc`], with a long mode for soak runs), and the reference model: a
//! small, recursive, allocating walker written for clarity straight from
//! the Intel SDM's description of 32-bit paging and docs/DESIGN.md's
//! ownership rules. It shares no code with the crate's walker.
#![allow(dead_code)]

use std::collections::HashMap;

use ptwalk::{
    Access, Aliasing, Fault, FaultReason, Invalid, Leaf, Level, PhysAddr, SpaceId, VirtAddr,
    WalkEvent,
};

pub const P: u32 = 1;
pub const RW: u32 = 2;
pub const US: u32 = 4;
pub const A: u32 = 0x20;
pub const PS: u32 = 0x80;
pub const COW: u32 = 0x200;
pub const PDE_FLAGS: u32 = P | RW | US | A;

/// A physical image built page by page: page 0 empty, tables handed out
/// upward from 0x1000 in the order they are first needed.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    pub buf: Vec<u8>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// Page 0 empty; tables are allocated upward from 0x1000.
    pub fn new() -> Self {
        ImageBuilder {
            buf: vec![0; 0x1000],
        }
    }

    pub fn alloc(&mut self) -> u32 {
        let pa = self.buf.len() as u32;
        self.buf.resize(self.buf.len() + 0x1000, 0);
        pa
    }

    pub fn put(&mut self, table: u32, idx: u32, val: u32) {
        let o = (table + 4 * idx) as usize;
        self.buf[o..o + 4].copy_from_slice(&val.to_le_bytes());
    }

    pub fn get(&self, table: u32, idx: u32) -> u32 {
        let o = (table + 4 * idx) as usize;
        u32::from_le_bytes(self.buf[o..o + 4].try_into().unwrap())
    }

    /// Maps `npages` 4 KiB pages from `va` to `pa`, creating page tables.
    pub fn map_range(&mut self, root: u32, va: u32, npages: u32, pa: u64, user: bool) {
        for n in 0..npages {
            let v = va + n * 0x1000;
            let (pdi, pti) = (v >> 22, (v >> 12) & 0x3FF);
            let pde = self.get(root, pdi);
            let pt = if pde & P == 0 {
                let pt = self.alloc();
                self.put(root, pdi, pt | PDE_FLAGS);
                pt
            } else {
                pde & 0xFFFF_F000
            };
            self.put(pt, pti, leaf(pa + u64::from(n) * 0x1000, user, n));
        }
    }
}

/// A leaf entry of the standard workloads: every 8th user page is
/// copy-on-write (read-only with bit 9), the rest are writable.
pub fn leaf(pa: u64, user: bool, n: u32) -> u32 {
    let mut f = P | A | if user { US } else { 0 };
    if user && n % 8 == 7 {
        f |= COW;
    } else {
        f |= RW;
    }
    (pa as u32 & 0xFFFF_F000) | f
}

pub const FRAMES: u64 = 0x4000_0000;

/// A standard workload and its expected counts (docs/BENCHMARKS.md).
pub struct Workload {
    pub name: &'static str,
    pub image: Vec<u8>,
    pub roots: Vec<u64>,
    pub leaves_references: u64,
    pub aliases: u64,
    pub leaves_followed: u64,
}

pub fn dense1() -> Workload {
    let mut img = ImageBuilder::new();
    let root = img.alloc();
    img.map_range(root, 0, 1 << 20, FRAMES, true);
    Workload {
        name: "dense1",
        image: img.buf,
        roots: vec![u64::from(root)],
        leaves_references: 1 << 20,
        aliases: 0,
        leaves_followed: 1 << 20,
    }
}

pub fn kshared16() -> Workload {
    let mut img = ImageBuilder::new();
    let roots: Vec<u32> = (0..16).map(|_| img.alloc()).collect();
    img.map_range(roots[0], 0xC000_0000, 256 * 1024, FRAMES, false);
    for &r in &roots[1..] {
        for pdi in 768..1024 {
            let v = img.get(roots[0], pdi);
            img.put(r, pdi, v);
        }
    }
    for (i, &r) in roots.iter().enumerate() {
        let base = FRAMES + 0x1000_0000 + i as u64 * 0x0100_0000;
        img.map_range(r, 0x0800_0000, 4096, base, true);
        img.map_range(r, 0xBFFF_0000, 16, base + 0x0080_0000, true);
    }
    let private = 4096 + 16;
    Workload {
        name: "kshared16",
        image: img.buf,
        roots: roots.iter().map(|&r| u64::from(r)).collect(),
        leaves_references: 16 * private + 256 * 1024,
        aliases: 15 * 256,
        leaves_followed: 16 * (private + 256 * 1024),
    }
}

/// The workloads' pseudo-random sequence: a 64-bit LCG (Knuth's MMIX
/// constants) yielding its high 31 bits.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }
}

impl Iterator for Lcg {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some(self.0 >> 33)
    }
}

pub fn sparse1() -> Workload {
    let mut img = ImageBuilder::new();
    let root = img.alloc();
    let mut g = Lcg::new(1);
    let mut used = std::collections::HashSet::new();
    let mut n = 0;
    while n < 64 {
        let pdi = g.next().unwrap() % 1024;
        if !used.insert(pdi) {
            continue;
        }
        let va = (pdi << 22) | ((g.next().unwrap() % 1024) << 12);
        img.map_range(root, va as u32, 1, FRAMES + n * 0x1000, true);
        n += 1;
    }
    Workload {
        name: "sparse1",
        image: img.buf,
        roots: vec![u64::from(root)],
        leaves_references: 64,
        aliases: 0,
        leaves_followed: 64,
    }
}

/// The v2p probe: (space, VAs) translated in kshared16.
pub fn v2p_vas() -> (usize, Vec<u64>) {
    let g = Lcg::new(7);
    (7, g.take(4096).map(|x| (x % (1 << 20)) << 12).collect())
}

/// How many of the v2p probes are mapped (docs/BENCHMARKS.md; the
/// generator script derives the same figure from its own mappings).
pub const V2P_MAPPED: usize = 1057;

/// The owner-index slots the benchmarks give a walk of an image of
/// `image_len` bytes: at least 1,024, and enough that the index (which
/// holds 7/8 of its slots) has room for every page of the image, since
/// every page of a workload image but page 0 is a table.
pub fn bench_slots(image_len: usize) -> usize {
    let pages = image_len.div_ceil(4096);
    let mut n = 1024;
    while n - n / 8 < pages {
        n *= 2;
    }
    n
}

// ---------------------------------------------------------------------------
// 8-byte-entry images: PAE and x86-64 (docs/BENCHMARKS.md, "PAE and x86-64
// workloads"). Built in Rust only; tests/workloads.rs counts them with its own
// small model and with the crate.

/// NX, bit 63 of an 8-byte entry.
pub const NX: u64 = 1 << 63;

/// The address field of an 8-byte entry (bits 51:12).
pub const ADDR64: u64 = 0x000F_FFFF_FFFF_F000;

/// A physical image of 8-byte-entry tables built page by page, as
/// [`ImageBuilder`] does for i686: page 0 empty, tables handed out upward
/// from 0x1000 in the order they are first needed.
///
/// `levels` is the mode's: 3 for PAE (the root is a 4-entry, 32-byte PDPT
/// whose entries carry only P), 4 for x86-64, 5 for x86-64 with LA57.
#[derive(Clone, Debug)]
pub struct Image64Builder {
    pub buf: Vec<u8>,
    pub levels: u8,
}

impl Image64Builder {
    /// Page 0 empty; tables are allocated upward from 0x1000.
    pub fn new(levels: u8) -> Self {
        assert!((3..=5).contains(&levels), "levels {levels}");
        Image64Builder {
            buf: vec![0; 0x1000],
            levels,
        }
    }

    pub fn alloc(&mut self) -> u64 {
        let pa = self.buf.len() as u64;
        self.buf.resize(self.buf.len() + 0x1000, 0);
        pa
    }

    /// PAE: `n` (at most 127) 32-byte PDPTs in one fresh page, at offsets
    /// 0x20, 0x40, ... of it: 32-byte aligned and never page aligned.
    pub fn alloc_pae_roots(&mut self, n: usize) -> Vec<u64> {
        assert!(self.levels == 3 && n < 128);
        let page = self.alloc();
        (0..n as u64).map(|i| page + 0x20 * (i + 1)).collect()
    }

    pub fn put(&mut self, table: u64, idx: usize, val: u64) {
        let o = table as usize + 8 * idx;
        self.buf[o..o + 8].copy_from_slice(&val.to_le_bytes());
    }

    pub fn get(&self, table: u64, idx: usize) -> u64 {
        let o = table as usize + 8 * idx;
        u64::from_le_bytes(self.buf[o..o + 8].try_into().unwrap())
    }

    /// Index of `va`'s entry in a table at `level` (1: the page table).
    pub fn index(&self, va: u64, level: u8) -> usize {
        let bits = if self.levels == 3 && level == 3 { 2 } else { 9 };
        ((va >> (12 + 9 * (u32::from(level) - 1))) & ((1 << bits) - 1)) as usize
    }

    /// A directory entry at `level` pointing at `table`: P|RW|US|A, except
    /// a PAE PDPTE, which is P alone (its RW and US bits are reserved).
    pub fn dir_entry(&self, level: u8, table: u64) -> u64 {
        if self.levels == 3 && level == 3 {
            table | u64::from(P)
        } else {
            table | u64::from(PDE_FLAGS)
        }
    }

    /// The table that entry `va` of `table` (at `level` > 1) points at,
    /// allocated and linked on first use.
    pub fn child(&mut self, table: u64, level: u8, va: u64) -> u64 {
        let i = self.index(va, level);
        let e = self.get(table, i);
        if e & u64::from(P) != 0 {
            return e & ADDR64;
        }
        let t = self.alloc();
        let d = self.dir_entry(level, t);
        self.put(table, i, d);
        t
    }

    /// Maps `npages` 4 KiB pages from `va` to `pa` under `root`, creating
    /// the tables below it, with [`leaf64`]'s flags.
    pub fn map_range(&mut self, root: u64, va: u64, npages: u64, pa: u64, user: bool) {
        for n in 0..npages {
            let v = va + n * 0x1000;
            let mut t = root;
            for level in (2..=self.levels).rev() {
                t = self.child(t, level, v);
            }
            let i = self.index(v, 1);
            self.put(t, i, leaf64(pa + n * 0x1000, user, n));
        }
    }

    /// Copies entries `idx` of table `from` into table `to`.
    pub fn copy_entries(&mut self, from: u64, to: u64, idx: std::ops::Range<usize>) {
        for i in idx {
            let v = self.get(from, i);
            self.put(to, i, v);
        }
    }
}

/// [`leaf`]'s flags in an 8-byte entry (every 8th user page copy-on-write,
/// the rest writable; no NX), with a 64-bit frame.
pub fn leaf64(pa: u64, user: bool, n: u64) -> u64 {
    (pa & ADDR64) | u64::from(leaf(0, user, (n % 8) as u32))
}

/// An 8-byte-entry workload and its expected counts.
pub struct Workload64 {
    pub name: &'static str,
    /// 3: PAE; 4: x86-64.
    pub levels: u8,
    pub image: Vec<u8>,
    pub roots: Vec<u64>,
    pub leaves_references: u64,
    pub aliases: u64,
    pub leaves_followed: u64,
    /// Tables the references walk owns (what an owner index must hold).
    pub tables: u64,
    /// Entries the walk reads (root tables included).
    pub entries: u64,
}

/// The x86-64 workloads' kernel mapping: the direct map's start
/// (PML4 entry 273, PDPT entry 0).
pub const X64_KERNEL_VA: u64 = 0xffff_8880_0000_0000;
/// The x86-64 workloads' private user mappings: 16 MiB of program
/// (PML4 entry 170, 2 MiB aligned) and 16 stack pages ending at the top
/// of the lower half.
pub const X64_USER_VA: u64 = 0x0000_5555_5540_0000;
pub const X64_STACK_VA: u64 = 0x0000_7fff_ffff_0000;

/// One 4-level space: 4 GiB from VA 0 densely mapped with 2^20 user pages,
/// frames from [`FRAMES`] + va.
pub fn x64_dense1() -> Workload64 {
    let mut img = Image64Builder::new(4);
    let root = img.alloc();
    img.map_range(root, 0, 1 << 20, FRAMES, true);
    Workload64 {
        name: "x64_dense1",
        levels: 4,
        image: img.buf,
        roots: vec![root],
        leaves_references: 1 << 20,
        aliases: 0,
        leaves_followed: 1 << 20,
        tables: 1 + 4 + 2048,
        entries: 512 * (1 + 1 + 4 + 2048),
    }
}

/// PAE: one space, all 4 GiB mapped with 2^20 user pages, frames from
/// [`FRAMES`] + va; its PDPT sits at 0x1020.
pub fn pae_dense1() -> Workload64 {
    let mut img = Image64Builder::new(3);
    let root = img.alloc_pae_roots(1)[0];
    img.map_range(root, 0, 1 << 20, FRAMES, true);
    Workload64 {
        name: "pae_dense1",
        levels: 3,
        image: img.buf,
        roots: vec![root],
        leaves_references: 1 << 20,
        aliases: 0,
        leaves_followed: 1 << 20,
        tables: 4 + 2048,
        entries: 4 + 512 * (4 + 2048),
    }
}

/// The private user pages of space `i` of the kshared16 workloads: 4,096
/// at `user` and 16 at `stack`, frames as in [`kshared16`].
fn map_private(img: &mut Image64Builder, root: u64, i: usize, user: u64, stack: u64) {
    let base = FRAMES + 0x1000_0000 + i as u64 * 0x0100_0000;
    img.map_range(root, user, 4096, base, true);
    img.map_range(root, stack, 16, base + 0x0080_0000, true);
}

/// Sixteen 4-level spaces sharing the kernel half at the PML4-entry level:
/// space 0 maps 256Ki kernel pages (1 GiB) at [`X64_KERNEL_VA`], and
/// spaces 1 to 15 copy its PML4 entries 256..=511 (only 273 is present), so
/// they reach the same PDPT. Each space maps its private pages at
/// [`X64_USER_VA`] and [`X64_STACK_VA`].
pub fn x64_kshared16() -> Workload64 {
    let mut img = Image64Builder::new(4);
    let roots: Vec<u64> = (0..16).map(|_| img.alloc()).collect();
    img.map_range(roots[0], X64_KERNEL_VA, 256 * 1024, FRAMES, false);
    for &r in &roots[1..] {
        img.copy_entries(roots[0], r, 256..512);
    }
    for (i, &r) in roots.iter().enumerate() {
        map_private(&mut img, r, i, X64_USER_VA, X64_STACK_VA);
    }
    let private = 4096 + 16;
    // Per space: 2 PDPTs, 2 PDs, 8 + 1 PTs; the kernel: 1 + 1 + 512.
    let (own, kernel) = (2 + 2 + 9, 1 + 1 + 512);
    Workload64 {
        name: "x64_kshared16",
        levels: 4,
        image: img.buf,
        roots,
        leaves_references: 16 * private + 256 * 1024,
        aliases: 15,
        leaves_followed: 16 * (private + 256 * 1024),
        tables: 16 * own + kernel,
        entries: 512 * (16 * (1 + own) + kernel),
    }
}

/// kshared16 in PAE: the same VAs, leaves and frames. The kernel half
/// (PDPT entry 3: `0xC000_0000` to 4 GiB) is 512 page tables owned by space
/// 0; every other space has a kernel PD of its own whose 512 entries are
/// copied from space 0's, so the page tables are shared (as in kshared16),
/// not the PD. The 16 PDPTs sit in one page at 0x1020, 0x1040, ...
pub fn pae_kshared16() -> Workload64 {
    let mut img = Image64Builder::new(3);
    let roots = img.alloc_pae_roots(16);
    img.map_range(roots[0], 0xC000_0000, 256 * 1024, FRAMES, false);
    let kpd = img.get(roots[0], 3) & ADDR64;
    for &r in &roots[1..] {
        let pd = img.child(r, 3, 0xC000_0000);
        img.copy_entries(kpd, pd, 0..512);
    }
    for (i, &r) in roots.iter().enumerate() {
        map_private(&mut img, r, i, 0x0800_0000, 0xBFFF_0000);
    }
    let private = 4096 + 16;
    // Per space: 3 PDs (PDPT entries 0, 2, 3) and 8 + 1 PTs; the kernel
    // PTs: 512.
    Workload64 {
        name: "pae_kshared16",
        levels: 3,
        image: img.buf,
        roots,
        leaves_references: 16 * private + 256 * 1024,
        aliases: 15 * 512,
        leaves_followed: 16 * (private + 256 * 1024),
        tables: 16 * (3 + 9) + 512,
        entries: 16 * (4 + 512 * (3 + 9)) + 512 * 512,
    }
}

/// One 4-level space with 64 single user pages, each under a PML4 entry of
/// its own in the lower half: per page the LCG (seed 1) draws a PML4 index
/// below 256 (redrawn if used), then PDPT, PD and PT indices; frames
/// [`FRAMES`] + n * 0x1000 in the order drawn.
pub fn x64_sparse1() -> Workload64 {
    let mut img = Image64Builder::new(4);
    let root = img.alloc();
    let mut g = Lcg::new(1);
    let mut used = std::collections::HashSet::new();
    let mut n = 0;
    while n < 64 {
        let l4 = g.next().unwrap() % 256;
        if !used.insert(l4) {
            continue;
        }
        let mut va = l4 << 39;
        for shift in [30, 21, 12] {
            va |= (g.next().unwrap() % 512) << shift;
        }
        img.map_range(root, va, 1, FRAMES + n * 0x1000, true);
        n += 1;
    }
    Workload64 {
        name: "x64_sparse1",
        levels: 4,
        image: img.buf,
        roots: vec![root],
        leaves_references: 64,
        aliases: 0,
        leaves_followed: 64,
        tables: 3 * 64,
        entries: 512 * (1 + 3 * 64),
    }
}

/// The x86-64 v2p probe: (space, VAs) translated in `x64_kshared16`. Each
/// LCG draw (seed 7) `x` picks by its low bit a kernel probe, a page in
/// the 2 GiB from [`X64_KERNEL_VA`] (half of it mapped), or a user probe,
/// a page in the 32 MiB from [`X64_USER_VA`] (half of it mapped), from
/// `x >> 1`.
pub fn x64_v2p_vas() -> (usize, Vec<u64>) {
    let g = Lcg::new(7);
    let vas = g
        .take(4096)
        .map(|x| {
            if x & 1 == 1 {
                X64_KERNEL_VA + (((x >> 1) % (1 << 19)) << 12)
            } else {
                X64_USER_VA + (((x >> 1) % (1 << 13)) << 12)
            }
        })
        .collect();
    (7, vas)
}

/// A flat physical image (byte `i` is address `i`) from a real-guest
/// fixture's decompressed `tables.bin.gz`: records of a u64 little-endian
/// page address and the page's 4,096 bytes. Pages not in the extract read
/// as zeros.
///
/// # Panics
///
/// On a partial record or a page that is not page aligned.
pub fn flat_image_from_records(records: &[u8]) -> Vec<u8> {
    assert_eq!(records.len() % (8 + 4096), 0, "partial record");
    let mut img = Vec::new();
    for rec in records.chunks_exact(8 + 4096) {
        let pa = u64::from_le_bytes(rec[..8].try_into().unwrap());
        assert_eq!(pa % 4096, 0, "page {pa:#x} not aligned");
        let pa = usize::try_from(pa).unwrap();
        if img.len() < pa + 4096 {
            img.resize(pa + 4096, 0);
        }
        img[pa..pa + 4096].copy_from_slice(&rec[8..]);
    }
    img
}

/// Leaves a follow walk of every root of the x86_64-pti fixture reports
/// (the sum of its meta.json `per_root` leaves; tests/workloads.rs checks
/// both).
pub const X64_PTI_FOLLOWED: u64 = 552_650;

/// Entries that follow walk reads (tests/workloads.rs counts them).
pub const X64_PTI_FOLLOW_ENTRIES: u64 = 8_663_040;

/// How many of the x86-64 v2p probes are mapped (tests/workloads.rs
/// derives it from the definitions and from the image).
pub const X64_V2P_MAPPED: usize = 2033;

/// Entries the 4,096 v2p probes read in `kshared16` (a directory entry each,
/// and a page-table entry where it is present) and the x86-64 probes in
/// `x64_kshared16` (each level down to the first entry that is not a
/// table): the work a translation does, by which the x86-64 v2p target is
/// set (docs/BENCHMARKS.md). tests/workloads.rs counts both.
pub const V2P_ENTRIES_READ: u64 = 5158;
pub const X64_V2P_ENTRIES_READ: u64 = 13_301;

/// Whether `va` is mapped in a space of `x64_kshared16` (from the
/// definitions, not from the image).
pub fn x64_kshared16_maps(va: u64) -> bool {
    let within = |base: u64, len: u64| va >= base && va - base < len;
    within(X64_KERNEL_VA, 1 << 30)
        || within(X64_USER_VA, 4096 << 12)
        || within(X64_STACK_VA, 16 << 12)
}

// ---------------------------------------------------------------------------
// Property-test configuration.

/// The environment variable that sets how many cases every property runs
/// (a soak run: `PTWALK_QC_TESTS=100000 cargo test --release --test props`).
pub const QC_TESTS_VAR: &str = "PTWALK_QC_TESTS";

/// The number of cases a property runs: `default`, or the value of
/// [`QC_TESTS_VAR`] when it is set.
///
/// # Panics
///
/// If the variable is set to anything but a positive integer (a typo must
/// not quietly fall back to the short run).
pub fn qc_tests(default: u64) -> u64 {
    match std::env::var(QC_TESTS_VAR) {
        Err(std::env::VarError::NotPresent) => default,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{QC_TESTS_VAR}={v:?}: expected a positive number of cases"),
        },
        Err(e) => panic!("{QC_TESTS_VAR}: {e}"),
    }
}

/// The quickcheck runner for a property: `default_tests` cases (or the
/// long-mode count, see [`qc_tests`]) generated at size `size`. Every
/// property in tests/ goes through this. (Only in test builds: the fuzz
/// targets include this file for the reference model, without quickcheck.)
#[cfg(test)]
pub fn qc(default_tests: u64, size: usize) -> quickcheck::QuickCheck {
    let tests = qc_tests(default_tests);
    quickcheck::QuickCheck::new()
        .tests(tests)
        .max_tests(tests.saturating_mul(10))
        .rng(quickcheck::Gen::new(size))
}

// ---------------------------------------------------------------------------
// The reference model.

/// The 1024 entries of the 4 KiB table at `pa`, if it lies wholly in `mem`.
fn table(mem: &[u8], pa: u64) -> Option<Vec<u32>> {
    let start = usize::try_from(pa).ok()?;
    let bytes = mem.get(start..start.checked_add(4096)?)?;
    Some(
        bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    )
}

/// RW and US from the entry; 32-bit paging has no NX, so always execute.
fn access_of(e: u32) -> Access {
    Access::from_bits((((e >> 1) & 3) | 4) as u8)
}

fn intersects(va: u64, size: u64, start: u64, end: u64) -> bool {
    va < end && va + size > start
}

/// How the model treats aliases.
#[derive(Clone, Copy)]
pub enum Consumer<'m> {
    References,
    /// Resolve (and descend) aliases in this memory.
    FollowIn(&'m [u8]),
}

/// The model: every event of a walk over `roots` in `mem` (an image at
/// physical 0), in walk order.
pub fn model(
    mem: &[u8],
    roots: &[u64],
    pse: bool,
    address: u64,
    len: u64,
    consumer: Consumer<'_>,
) -> Vec<WalkEvent> {
    let start = address & !0xFFF;
    let end = address.saturating_add(len).min(1 << 32);
    let mut out = Vec::new();
    if start >= end || len == 0 {
        return out;
    }
    let mut owners: HashMap<u64, (u32, u64)> = HashMap::new();
    for (s, &root) in roots.iter().enumerate() {
        let space = SpaceId(s as u32);
        // CR3: the directory's address is bits 31:12 (PWT, PCD below).
        let root = root & !0xFFF;
        let Some(pd) = table(mem, root) else {
            out.push(fault(space, 0, 2, root));
            continue;
        };
        for (i, &pde) in pd.iter().enumerate() {
            let va = (i as u64) << 22;
            if !intersects(va, 1 << 22, start, end) || pde & P == 0 {
                continue;
            }
            if pse && pde & PS != 0 {
                let pa = u64::from(pde & 0xFFC0_0000) | (u64::from((pde >> 13) & 0xFF) << 32);
                if pde & (1 << 21) != 0 {
                    // Reserved bit 21 (SDM table 4-4): the CPU faults.
                    out.push(WalkEvent::Fault(Fault {
                        space,
                        va: VirtAddr(va),
                        level: Level(2),
                        pa: PhysAddr(pa),
                        reason: FaultReason::Reserved,
                    }));
                    continue;
                }
                out.push(WalkEvent::Leaf(Leaf {
                    space,
                    va: VirtAddr(va),
                    pa: PhysAddr(pa),
                    entry: u64::from(pde),
                    level: Level(2),
                    size_log2: 22,
                    access: access_of(pde),
                }));
                continue;
            }
            let pt_pa = u64::from(pde & 0xFFFF_F000);
            let Some(pt) = table(mem, pt_pa) else {
                out.push(fault(space, va, 1, pt_pa));
                continue;
            };
            match owners.get(&pt_pa) {
                None => {
                    owners.insert(pt_pa, (s as u32, va));
                    emit_pt(&mut out, space, va, &pt, access_of(pde), start, end);
                }
                Some(&(owner, owner_va)) => match consumer {
                    Consumer::References => out.push(WalkEvent::Aliasing(Aliasing {
                        space,
                        va: VirtAddr(va),
                        owner: SpaceId(owner),
                        owner_va: VirtAddr(owner_va),
                        table: PhysAddr(pt_pa),
                        entry: u64::from(pde),
                        level: Level(2),
                        size_log2: 22,
                    })),
                    Consumer::FollowIn(fm) => follow(
                        &mut out,
                        fm,
                        roots[owner as usize],
                        owner_va,
                        pse,
                        space,
                        va,
                        pde,
                        start,
                        end,
                    ),
                },
            }
        }
    }
    out
}

/// Resolves the owner's PDE for `owner_va` in `fm` and emits what our
/// entry (`pde`, mapping `va` in `space`) then means.
#[allow(clippy::too_many_arguments)]
pub fn follow(
    out: &mut Vec<WalkEvent>,
    fm: &[u8],
    owner_root: u64,
    owner_va: u64,
    pse: bool,
    space: SpaceId,
    va: u64,
    pde: u32,
    start: u64,
    end: u64,
) {
    let owner_root = owner_root & !0xFFF;
    let Some(owner_pd) = table(fm, owner_root) else {
        out.push(fault(space, va, 2, owner_root));
        return;
    };
    let owner_pde = owner_pd[(owner_va >> 22) as usize];
    if owner_pde & P == 0 || (pse && owner_pde & PS != 0) {
        out.push(WalkEvent::Invalid(Invalid {
            space,
            va: VirtAddr(va),
            level: Level(2),
            size_log2: 22,
        }));
        return;
    }
    let pt_pa = u64::from(owner_pde & 0xFFFF_F000);
    match table(fm, pt_pa) {
        Some(pt) => emit_pt(out, space, va, &pt, access_of(pde), start, end),
        None => out.push(fault(space, va, 1, pt_pa)),
    }
}

/// The leaves of page table `pt` mapped at `va` under a directory entry
/// granting `above`.
pub fn emit_pt(
    out: &mut Vec<WalkEvent>,
    space: SpaceId,
    va: u64,
    pt: &[u32],
    above: Access,
    start: u64,
    end: u64,
) {
    for (j, &pte) in pt.iter().enumerate() {
        let v = va + ((j as u64) << 12);
        if intersects(v, 1 << 12, start, end) && pte & P != 0 {
            out.push(WalkEvent::Leaf(Leaf {
                space,
                va: VirtAddr(v),
                pa: PhysAddr(u64::from(pte & 0xFFFF_F000)),
                entry: u64::from(pte),
                level: Level(1),
                size_log2: 12,
                access: above & access_of(pte),
            }));
        }
    }
}

fn fault(space: SpaceId, va: u64, level: u8, pa: u64) -> WalkEvent {
    WalkEvent::Fault(Fault {
        space,
        va: VirtAddr(va),
        level: Level(level),
        pa: PhysAddr(pa),
        reason: FaultReason::OutOfBounds,
    })
}

/// The 4 KiB table at `pa` in `mem` (for tests descending a resolved alias).
pub fn page_table(mem: &[u8], pa: u64) -> Option<Vec<u32>> {
    table(mem, pa)
}
