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
