//! Snapshot compaction in PAE, 4-level and 5-level x86-64: round trips over
//! random multi-root images with sharing at several levels, large pages of
//! each size, NX mixes and device memory, judged both by `verify` and by
//! an independent model (tests/compact/model64.rs); compacting twice; the
//! named cases of the every-mode issue; damage `verify` must catch; and the
//! real PAE, PTI and LA57 guest extracts of tests/fixtures/guests.
#![cfg(feature = "alloc")]
#![allow(clippy::single_range_in_vec_init)]

mod common;
#[path = "compact/model64.rs"]
mod model64;

use model64::Geo;
use ptwalk::compact::{
    CompactError, Compacted, Compactor, Layout, Mismatch, Policy, VerifyReport, verify,
};
use ptwalk::{Level, MemError, Pae, PagingMode, PhysAddr, PhysMem, VirtAddr, X86_64};
use quickcheck::{Arbitrary, Gen};

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 0x20;
const PS: u64 = 0x80;
const NX: u64 = 1 << 63;
const DIR: u64 = P | RW | US | A;

// ---------------------------------------------------------------------------
// Random images.

/// Table pages at 0x1000 * (1..=TABLES), data pages after them, a 2 MiB
/// frame in memory at 2 MiB (4 KiB pages map into it too). The image ends
/// 8 KiB into the 2 MiB frame at 4 MiB (a 2 MiB page there lies partly
/// inside memory), so a 1 GiB page at 0 lies partly inside memory too:
/// its first two 2 MiB pieces wholly, its third partly. Device memory:
/// right after the image, at 4 GiB, and a whole 1 GiB frame at 1 GiB.
const TABLES: u64 = 12;
const DATA: u64 = 16;
const BIG: u64 = 0x20_0000;
const IMAGE: usize = 0x40_2000;
const DEVICE: u64 = 0x1_0000_0000;
const GIG_DEVICE: u64 = 0x4000_0000;
/// Output bases the generator picks from (`None`: the default).
const OUT_BASES: [Option<u64>; 5] = [None, None, Some(0), Some(0x8000_0000), Some(DEVICE)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pae,
    X64,
    La57,
}

impl Kind {
    fn geo(self) -> Geo {
        match self {
            Kind::Pae => model64::PAE,
            Kind::X64 => model64::X64,
            Kind::La57 => model64::LA57,
        }
    }

    /// Hot table indices (several roots and tables meet there).
    fn hot(self) -> &'static [u16] {
        match self {
            // A PAE root at offset 32 * j of its page holds entries
            // 4j..4j+3 of it.
            Kind::Pae => &[0, 1, 2, 3, 4, 5, 6, 7, 511],
            // 255 and 256: the last of the lower half, the first of the
            // upper (canonical 0xffff_8000_...) at the top level; 511 at
            // every level reaches the last page of the address space.
            _ => &[0, 1, 255, 256, 511],
        }
    }
}

/// Runs `$body` with `$m` bound to the crate's mode value for `$kind`.
macro_rules! with_mode {
    ($kind:expr, |$m:ident| $body:expr) => {
        match $kind {
            Kind::Pae => {
                let $m = Pae::default();
                $body
            }
            Kind::X64 => {
                let $m = X86_64::default();
                $body
            }
            Kind::La57 => {
                let $m = X86_64::LA57;
                $body
            }
        }
    };
}

#[derive(Clone, Debug)]
struct Snap {
    kind: Kind,
    /// (table page, index, value, keep reserved PDPTE bits).
    writes: Vec<(u8, u16, u64, bool)>,
    /// (table page, variant): variant picks the root's place in its page
    /// (PAE) and low CR3 bits.
    roots: Vec<(u8, u8)>,
    skip: Vec<(u64, u64)>,
    flags: u8,
}

impl Snap {
    fn image(&self) -> Vec<u8> {
        let mut img = vec![0u8; IMAGE];
        // Distinct contents: every 4 KiB page starts with its own number.
        for (n, page) in img.chunks_mut(4096).enumerate() {
            page[..8].copy_from_slice(&(n as u64 ^ 0xA5A5_0000).to_le_bytes());
        }
        for t in 1..=TABLES as usize {
            img[t * 4096..(t + 1) * 4096].fill(0);
        }
        let roots = self.roots();
        for &(t, i, mut v, raw) in &self.writes {
            let pa = u64::from(t) * 4096 + u64::from(i) * 8;
            // PAE PDPTEs have no RW, US, PS, NX: most writes there keep
            // only what a PDPTE may hold, some keep reserved bits.
            let in_pdpt = roots
                .iter()
                .any(|r| (r.0 & !0x1F..(r.0 & !0x1F) + 32).contains(&pa));
            if self.kind == Kind::Pae && in_pdpt && !raw {
                v &= 0x000F_FFFF_FFFF_F000 | P | 0x18 | A | 0xE00;
            }
            img[pa as usize..pa as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        img
    }

    /// The roots as CR3 holds them (duplicates of one table dropped).
    fn roots(&self) -> Vec<PhysAddr> {
        let mut out: Vec<PhysAddr> = Vec::new();
        for &(page, variant) in &self.roots {
            let base = u64::from(page) << 12;
            let cr3 = match self.kind {
                Kind::Pae => base + 32 * u64::from(variant % 2) + 8 * u64::from((variant / 2) % 2),
                _ => base | (u64::from(variant) * 0x11) & 0xFFF,
            };
            let table = self.kind.geo().root(cr3);
            if !out.iter().any(|r| self.kind.geo().root(r.0) == table) {
                out.push(PhysAddr(cr3));
            }
        }
        out
    }

    fn policy(&self) -> Policy {
        Policy {
            skip: self
                .skip
                .iter()
                .map(|&(a, l)| a..a.saturating_add(l))
                .collect(),
            cow: self.flags & 1 != 0,
            // A quarter of the cases: a split 1 GiB page is 262,144 pages.
            split_large: self.flags & 0x42 == 0x42,
            drop_device_pages: self.flags & 4 != 0,
            keep_empty_tables: self.flags & 8 != 0,
        }
    }

    fn out_base(&self) -> Option<u64> {
        OUT_BASES[usize::from(self.flags >> 4) % OUT_BASES.len()]
    }
}

fn index(g: &mut Gen, kind: Kind) -> u16 {
    if u8::arbitrary(g) % 3 != 0 {
        *g.choose(kind.hot()).unwrap()
    } else {
        u16::arbitrary(g) % 512
    }
}

fn value(g: &mut Gen) -> u64 {
    // Flags: anything in bits 1..=11 but PS (added below), NX half the time.
    let mut flags = u64::arbitrary(g) & 0xF7E;
    if bool::arbitrary(g) {
        flags |= NX;
    }
    let page = |g: &mut Gen, n: u64| (u64::arbitrary(g) % n) << 12;
    match u8::arbitrary(g) % 20 {
        // A table (or, in a page table, a page): the first four table
        // pages half the time, so that tables are shared often.
        0..=6 => {
            let n = if bool::arbitrary(g) { 4 } else { TABLES };
            (page(g, n) + 0x1000) | flags | P
        }
        7 | 8 => (page(g, DATA) + (TABLES + 1) * 0x1000) | flags | P,
        9 => (BIG + page(g, 16)) | flags | P,
        10 | 11 => {
            let at = *g.choose(&[IMAGE as u64, DEVICE]).unwrap();
            (at + page(g, 16)) | flags | P
        }
        // 2 MiB: in memory, partly inside, outside (a PTE: PAT; a PDPTE:
        // reserved bits).
        12 | 13 => *g.choose(&[BIG, 0x40_0000, DEVICE]).unwrap() | flags | PS | P,
        // 1 GiB: partly inside memory, outside.
        14 => *g.choose(&[0, GIG_DEVICE]).unwrap() | flags | PS | P,
        _ => u64::arbitrary(g) & !1,
    }
}

impl Arbitrary for Snap {
    fn arbitrary(g: &mut Gen) -> Self {
        let kind = *g.choose(&[Kind::Pae, Kind::X64, Kind::La57]).unwrap();
        Snap::of(kind, g)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let base = self.clone();
        let b2 = self.clone();
        let b3 = self.clone();
        Box::new(
            self.writes
                .clone()
                .shrink()
                .map(move |writes| Snap {
                    writes,
                    ..base.clone()
                })
                .chain(
                    self.skip
                        .clone()
                        .shrink()
                        .map(move |skip| Snap { skip, ..b2.clone() }),
                )
                .chain((self.flags != 0).then_some(Snap { flags: 0, ..b3 })),
        )
    }
}

impl Snap {
    fn of(kind: Kind, g: &mut Gen) -> Snap {
        let mut writes: Vec<(u8, u16, u64, bool)> = (0..usize::arbitrary(g) % 60)
            .map(|_| {
                (
                    (u8::arbitrary(g) % TABLES as u8) + 1,
                    index(g, kind),
                    value(g),
                    u8::arbitrary(g) % 8 == 0,
                )
            })
            .collect();
        let roots: Vec<(u8, u8)> = (0..usize::arbitrary(g) % 4 + 1)
            .map(|_| (u8::arbitrary(g) % TABLES as u8 + 1, u8::arbitrary(g)))
            .collect();
        if kind == Kind::Pae {
            // A PDPT has 4 entries: fill some directly, or random writes
            // would rarely meet them.
            for &(page, variant) in &roots {
                for _ in 0..u8::arbitrary(g) % 5 {
                    let slot = 4 * u16::from(variant % 2) + u16::from(u8::arbitrary(g) % 4);
                    let n = if bool::arbitrary(g) { 4 } else { TABLES };
                    let table = ((u64::arbitrary(g) % n) << 12) + 0x1000;
                    writes.push((page, slot, table | A | P, false));
                }
            }
        }
        let geo = kind.geo();
        let skip = (0..usize::arbitrary(g) % 3)
            .map(|_| {
                // Somewhere mapped often: a hot index (or 0) at every level.
                let mut start = 0u64;
                for level in 1..=geo.levels {
                    let i = if u8::arbitrary(g) % 3 == 0 {
                        0
                    } else {
                        u64::from(*g.choose(kind.hot()).unwrap()) % geo.entries(level)
                    };
                    start |= i << geo.shift(level);
                }
                let len = match u8::arbitrary(g) % 3 {
                    0 => (u64::from(u32::arbitrary(g) % 4) + 1) << 12,
                    1 => (u64::from(u32::arbitrary(g) % 4) + 1) << 21,
                    _ => u64::from(u32::arbitrary(g) % 0x8000_0000) + 1,
                };
                (geo.canonical(start), len)
            })
            .collect::<Vec<_>>();
        let mut snap = Snap {
            kind,
            writes,
            roots,
            skip,
            flags: u8::arbitrary(g),
        };
        // Half the skipped ranges start inside a mapped page.
        let mem = snap.image();
        let old = model64::Mem {
            base: 0,
            bytes: &mem,
        };
        let leaves: Vec<model64::HwLeaf> = snap
            .roots()
            .iter()
            .flat_map(|r| model64::hw_leaves(geo, old, r.0))
            .collect();
        for r in &mut snap.skip {
            if let (Some(l), true) = (g.choose(&leaves), bool::arbitrary(g)) {
                r.0 = l.va + ((u64::arbitrary(g) % (l.size >> 12)) << 12);
            }
        }
        snap
    }
}

fn compact_in<Q: PagingMode>(
    mode: Q,
    mem: &[u8],
    roots: &[PhysAddr],
    policy: &Policy,
    base: Option<u64>,
) -> Result<Compacted, CompactError> {
    let c = Compactor::new_in(mode, mem, roots)?.policy(policy.clone());
    match base {
        Some(b) => c.out_base(PhysAddr(b)).run(),
        None => c.run(),
    }
}

/// Compacts, verifies and asks the model; `Err` says what failed.
fn round_trip(s: &Snap) -> Result<Option<Compacted>, String> {
    let (mem, roots, policy) = (s.image(), s.roots(), s.policy());
    let out = match with_mode!(s.kind, |m| compact_in(
        m,
        &mem,
        &roots,
        &policy,
        s.out_base()
    )) {
        Ok(out) => out,
        Err(e) if refusal_is_right(s, &e) => return Ok(None),
        Err(e) => return Err(format!("compaction failed: {e}")),
    };
    let report = with_mode!(s.kind, |m| verify(
        m,
        &mem[..],
        &roots,
        &out,
        out.roots(),
        &policy
    ));
    if !report.is_ok() {
        return Err(format!("verify: {report:#x?}"));
    }
    judge(s.kind.geo(), &mem, &roots, &out, &policy)?;
    let st = out.stats();
    if st.data_bytes + st.padding_bytes + st.table_bytes != st.output_bytes
        || st.output_bytes != out.image.len() as u64
    {
        return Err(format!("stats do not add up: {st:?}"));
    }
    Ok(Some(out))
}

/// The independent model's verdict.
fn judge(
    g: Geo,
    mem: &[u8],
    roots: &[PhysAddr],
    out: &Compacted,
    policy: &Policy,
) -> Result<(), String> {
    let raw: Vec<u64> = roots.iter().map(|r| r.0).collect();
    let new: Vec<u64> = out.roots().iter().map(|r| r.0).collect();
    model64::faithful(
        g,
        model64::Mem {
            base: 0,
            bytes: mem,
        },
        &raw,
        model64::Mem {
            base: out.layout.base.0,
            bytes: &out.image,
        },
        &new,
        &rules(policy),
    )
}

fn rules(policy: &Policy) -> model64::Rules {
    model64::Rules {
        skip: policy.skip.iter().map(|r| (r.start, r.end)).collect(),
        cow: policy.cow,
        drop_device: policy.drop_device_pages,
        split_large: policy.split_large,
    }
}

/// An explicit output base is refused only when the output would really
/// cover a device frame the snapshot maps in place.
fn refusal_is_right(s: &Snap, e: &CompactError) -> bool {
    if let CompactError::RootAbove4G { root } = *e {
        // PAE's CR3 holds 32 bits.
        return s.kind == Kind::Pae && root.0 >> 32 != 0 && s.out_base().is_some();
    }
    let CompactError::DeviceOverlap { device, base, end } = *e else {
        eprintln!("unexpected error {e:?}");
        return false;
    };
    let mem = s.image();
    let old = model64::Mem {
        base: 0,
        bytes: &mem,
    };
    let g = s.kind.geo();
    let mapped_device = s.roots().iter().any(|r| {
        model64::hw_leaves(g, old, r.0).iter().any(|l| {
            let d = device.0 & !0xFFF;
            l.pa <= d && d - l.pa < l.size && old.frame(d).is_none()
        })
    });
    Some(base.0) == s.out_base() && (base.0..end.0).contains(&device.0) && mapped_device
}

fn report(s: &Snap) -> bool {
    match round_trip(s) {
        Ok(_) => true,
        Err(why) => {
            eprintln!("{why}\n{s:?}");
            false
        }
    }
}

/// A [`Snap`] of one mode, for a property of that mode.
macro_rules! snap_of {
    ($name:ident, $kind:expr) => {
        #[derive(Clone, Debug)]
        struct $name(Snap);

        impl Arbitrary for $name {
            fn arbitrary(g: &mut Gen) -> Self {
                $name(Snap::of($kind, g))
            }

            fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
                Box::new(self.0.shrink().map($name))
            }
        }
    };
}

snap_of!(PaeSnap, Kind::Pae);
snap_of!(X64Snap, Kind::X64);
snap_of!(La57Snap, Kind::La57);

const QC_TESTS: u64 = 50;
const QC_SIZE: usize = 64;

#[test]
fn pae_compaction_verifies_and_is_faithful() {
    common::qc(QC_TESTS, QC_SIZE).quickcheck((|s: PaeSnap| report(&s.0)) as fn(PaeSnap) -> bool);
}

#[test]
fn x86_64_compaction_verifies_and_is_faithful() {
    common::qc(QC_TESTS, QC_SIZE).quickcheck((|s: X64Snap| report(&s.0)) as fn(X64Snap) -> bool);
}

#[test]
fn la57_compaction_verifies_and_is_faithful() {
    common::qc(QC_TESTS, QC_SIZE).quickcheck((|s: La57Snap| report(&s.0)) as fn(La57Snap) -> bool);
}

/// The generator meets what the properties are about, in every mode:
/// aliases at every non-root level, large pages of each size (in memory,
/// partly inside, outside), NX and executable leaves, device pages,
/// aliases linked, invalidated and mapped privately, refusals.
#[test]
fn generator_covers_every_level_and_page_size() {
    // Refusals are rarer outside PAE (whose roots must stay below 4 GiB):
    // counted over every mode.
    let mut refused = 0;
    for kind in [Kind::Pae, Kind::X64, Kind::La57] {
        let g = kind.geo();
        // A fixed seed: a guard of the generator must not depend on luck.
        let mut rng = Gen::from_size_and_seed(QC_SIZE, 0x5EED_0003);
        let mut alias_levels = [0u64; 6];
        let (mut large2m, mut large1g, mut nx, mut exec, mut device) = (0, 0, 0, 0, 0);
        let (mut linked, mut invalidated, mut materialized, mut split) = (0, 0, 0, 0);
        let (mut multi, mut skipped) = (0, 0);
        for _ in 0..150 {
            let s = Snap::of(kind, &mut rng);
            let (mem, roots, policy) = (s.image(), s.roots(), s.policy());
            let old = model64::Mem {
                base: 0,
                bytes: &mem,
            };
            let raw: Vec<u64> = roots.iter().map(|r| r.0).collect();
            for a in model64::aliases(g, old, &raw) {
                alias_levels[usize::from(a.level)] += 1;
            }
            for &r in &raw {
                for l in model64::hw_leaves(g, old, r) {
                    large2m += u64::from(l.size == 1 << 21);
                    large1g += u64::from(l.size == 1 << 30);
                    nx += u64::from(!l.x);
                    exec += u64::from(l.x);
                }
            }
            match with_mode!(kind, |m| compact_in(m, &mem, &roots, &policy, s.out_base())) {
                Ok(out) => {
                    let st = out.stats();
                    linked += st.aliases_linked;
                    invalidated += st.aliases_invalidated;
                    materialized += st.aliases_materialized;
                    split += st.large_pages_split;
                    device += st.device_pages_kept + st.device_pages_dropped;
                    multi += u64::from(st.frames_multi_size > 0);
                    skipped += u64::from(st.pages_skipped > 0);
                }
                Err(e) => {
                    assert!(refusal_is_right(&s, &e), "{e:?}");
                    refused += 1;
                }
            }
        }
        let summary = format!(
            "{kind:?}: aliases by level {alias_levels:?}, 2M {large2m}, 1G {large1g}, nx {nx}, \
             exec {exec}, device {device}, linked {linked}, invalidated {invalidated}, \
             materialized {materialized}, split {split}, refused so far {refused}, \
             multi-size {multi}, skipped {skipped}"
        );
        eprintln!("{summary}");
        // Thresholds sit well below what 12 runs of 150 snapshots per mode
        // gave at their lowest (the generator is not seeded): coverage, not
        // counts.
        let every_level = (2..=usize::from(g.levels)).all(|l| alias_levels[l] > 5);
        assert!(
            every_level
                && large2m > 20
                && (kind == Kind::Pae || large1g > 10)
                && nx > 20
                && exec > 20
                && device > 20
                && linked > 20
                && invalidated > 0
                && materialized > 0
                && split > 5
                && multi > 1
                && skipped > 5,
            "{summary}"
        );
    }
    assert!(refused > 5, "{refused} refusals");
}

// ---------------------------------------------------------------------------
// Named cases.

/// A physical image of 8-byte tables built page by page: page 0 empty,
/// pages handed out upward from 0x1000.
struct Img {
    buf: Vec<u8>,
}

impl Img {
    fn new() -> Img {
        Img {
            buf: vec![0; 0x1000],
        }
    }

    fn alloc(&mut self) -> u64 {
        let pa = self.buf.len() as u64;
        self.buf.resize(self.buf.len() + 0x1000, 0);
        pa
    }

    /// A data page starting with `tag`.
    fn data(&mut self, tag: u64) -> u64 {
        let pa = self.alloc();
        self.buf[pa as usize..][..8].copy_from_slice(&tag.to_le_bytes());
        pa
    }

    fn put(&mut self, table: u64, i: u64, v: u64) {
        self.buf[(table + 8 * i) as usize..][..8].copy_from_slice(&v.to_le_bytes());
    }
}

fn word(out: &Compacted, pa: u64) -> u64 {
    let b = out.lend(PhysAddr(pa), 8).unwrap();
    u64::from_le_bytes(b.try_into().unwrap())
}

fn set_word(out: &mut Compacted, pa: u64, v: u64) {
    let off = (pa - out.layout.base.0) as usize;
    out.image[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Appends a zeroed page to a compacted image; returns its address.
fn append_page(out: &mut Compacted) -> u64 {
    let pa = out.layout.base.0 + out.image.len() as u64;
    out.image.resize(out.image.len() + 4096, 0);
    pa
}

/// The table an entry names.
fn target(raw: u64) -> u64 {
    raw & 0x000F_FFFF_FFFF_F000
}

fn check<Q: PagingMode>(
    mode: Q,
    mem: &[u8],
    roots: &[PhysAddr],
    out: &Compacted,
    policy: &Policy,
) -> VerifyReport {
    verify(mode, mem, roots, out, out.roots(), policy)
}

fn run<Q: PagingMode>(mode: Q, mem: &[u8], roots: &[PhysAddr], policy: &Policy) -> Compacted {
    Compactor::new_in(mode, mem, roots)
        .unwrap()
        .policy(policy.clone())
        .run()
        .unwrap()
}

/// Space `n` of 25 shares the kernel half: PML4 entry 256 of every root
/// names one PDPT (PD, PT, four pages); each root also has a private
/// PDPT, PD, PT and page at PML4 entry 0.
fn kernel_shared(n: usize) -> (Vec<u8>, Vec<PhysAddr>) {
    let mut img = Img::new();
    let roots: Vec<u64> = (0..n).map(|_| img.alloc()).collect();
    let (kpdpt, kpd, kpt) = (img.alloc(), img.alloc(), img.alloc());
    img.put(kpdpt, 0, kpd | DIR);
    // Half the kernel PD is NX.
    img.put(kpd, 0, kpt | DIR | NX);
    for k in 0..4 {
        let page = img.data(0x6b00 + k);
        img.put(kpt, k, page | P | RW | A);
    }
    for (s, &r) in roots.iter().enumerate() {
        img.put(r, 256, kpdpt | DIR);
        let (pdpt, pd, pt) = (img.alloc(), img.alloc(), img.alloc());
        img.put(r, 0, pdpt | DIR);
        img.put(pdpt, 0, pd | DIR);
        img.put(pd, 0, pt | DIR);
        let page = img.data(0x7500 + s as u64);
        img.put(pt, 1, page | DIR);
    }
    (img.buf, roots.into_iter().map(PhysAddr).collect())
}

#[test]
fn a_pdpt_shared_by_25_roots_is_one_pdpt_shared_by_25_after() {
    let (mem, roots) = kernel_shared(25);
    let policy = Policy::default();
    let out = run(X86_64::default(), &mem, &roots, &policy);
    let st = out.stats();
    assert_eq!((st.aliases_linked, st.aliases_invalidated), (24, 0));
    // 25 roots, the kernel PDPT, PD and PT, 25 private PDPTs, PDs and PTs.
    assert_eq!(st.tables_written, 25 + 3 + 3 * 25);
    let kernel: std::collections::HashSet<u64> = out
        .roots()
        .iter()
        .map(|r| target(word(&out, r.0 + 256 * 8)))
        .collect();
    assert_eq!(kernel.len(), 1, "one kernel PDPT after");
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    assert_eq!(report.aliases_checked, 24);
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
}

#[test]
fn one_pt_reached_512_times_from_one_pd_is_one_pt_after() {
    // ESPFIX: every entry of one PD names the same PT (upper half).
    let mut img = Img::new();
    let (root, pdpt, pd, pt) = (img.alloc(), img.alloc(), img.alloc(), img.alloc());
    img.put(root, 510, pdpt | DIR);
    img.put(pdpt, 3, pd | DIR);
    for i in 0..512 {
        img.put(pd, i, pt | P | RW | A | NX);
    }
    let (a, b) = (img.data(1), img.data(2));
    img.put(pt, 0, a | P | A);
    img.put(pt, 9, b | P | RW | A);
    let (mem, roots) = (img.buf, vec![PhysAddr(root)]);
    let policy = Policy::default();
    let out = run(X86_64::default(), &mem, &roots, &policy);
    let st = out.stats();
    assert_eq!(
        (st.aliases_linked, st.tables_written, st.pages_copied),
        (511, 4, 2)
    );
    let new_pdpt = target(word(&out, out.roots()[0].0 + 510 * 8));
    let new_pd = target(word(&out, new_pdpt + 3 * 8));
    let pts: std::collections::HashSet<u64> =
        (0..512).map(|i| word(&out, new_pd + 8 * i)).collect();
    assert_eq!(pts.len(), 1, "512 entries, one PT, NX kept: {pts:x?}");
    assert!(pts.iter().all(|&e| e & NX != 0));
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    assert_eq!((report.aliases_checked, report.pages_checked), (511, 2));
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
    // Reported VAs are canonical: the last alias's page, in the upper half.
    let last = model64::translate(
        model64::X64,
        model64::Mem {
            base: out.layout.base.0,
            bytes: &out.image,
        },
        out.roots()[0].0,
        0xffff_ff00_ffe0_9000,
    )
    .unwrap();
    assert_eq!((last.rw, last.x), (true, false));
}

/// Roots 0 and 1 share a PDPT (PML4 entry 1); root 2's own PDPT names, at
/// entry 5, the PD under it: sharing at level 4 and at level 3.
fn nested_sharing() -> (Vec<u8>, Vec<PhysAddr>) {
    let mut img = Img::new();
    let roots: Vec<u64> = (0..3).map(|_| img.alloc()).collect();
    let (x, y, pt, z) = (img.alloc(), img.alloc(), img.alloc(), img.alloc());
    img.put(roots[0], 1, x | DIR);
    img.put(roots[1], 1, x | DIR | NX);
    img.put(x, 0, y | DIR);
    img.put(y, 7, pt | DIR);
    let page = img.data(0x5959);
    img.put(pt, 0, page | DIR);
    img.put(roots[2], 2, z | DIR);
    img.put(z, 5, y | P | A);
    (img.buf, roots.into_iter().map(PhysAddr).collect())
}

#[test]
fn a_pd_shared_under_a_shared_pdpt_stays_shared_at_both_levels() {
    let (mem, roots) = nested_sharing();
    let policy = Policy::default();
    let out = run(X86_64::default(), &mem, &roots, &policy);
    assert_eq!(out.stats().aliases_linked, 2);
    assert_eq!(out.stats().tables_written, 3 + 4);
    let r = out.roots();
    let x0 = target(word(&out, r[0].0 + 8));
    let x1 = word(&out, r[1].0 + 8);
    assert_eq!(
        (target(x1), x1 & NX),
        (x0, NX),
        "the PDPT, with root 1's NX"
    );
    let y = target(word(&out, x0));
    let z = target(word(&out, r[2].0 + 2 * 8));
    let z5 = word(&out, z + 5 * 8);
    assert_eq!(
        (target(z5), z5 & RW),
        (y, 0),
        "the PD, read-only through root 2"
    );
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    assert_eq!(report.aliases_checked, 2);
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
}

/// PTI: a kernel root and a user root name one PDPT, one of them with NX.
fn pti(nx_on_owner: bool) -> (Vec<u8>, Vec<PhysAddr>) {
    let mut img = Img::new();
    let (kernel, user) = (img.alloc(), img.alloc());
    let (pdpt, pd, pt) = (img.alloc(), img.alloc(), img.alloc());
    let (owner_nx, alias_nx) = if nx_on_owner { (NX, 0) } else { (0, NX) };
    img.put(kernel, 0, pdpt | DIR | owner_nx);
    img.put(user, 0, pdpt | DIR | alias_nx);
    img.put(pdpt, 0, pd | DIR);
    img.put(pd, 0, pt | DIR);
    let page = img.data(0x0c0de);
    img.put(pt, 0, page | DIR);
    (img.buf, vec![PhysAddr(kernel), PhysAddr(user)])
}

#[test]
fn nx_on_one_roots_upper_entry_only_is_kept_either_way() {
    for nx_on_owner in [true, false] {
        let (mem, roots) = pti(nx_on_owner);
        let policy = Policy::default();
        let out = run(X86_64::default(), &mem, &roots, &policy);
        assert_eq!(out.stats().aliases_linked, 1);
        let new = model64::Mem {
            base: out.layout.base.0,
            bytes: &out.image,
        };
        let exec = |s: usize| {
            model64::translate(model64::X64, new, out.roots()[s].0, 0)
                .unwrap()
                .x
        };
        assert_eq!((exec(0), exec(1)), (!nx_on_owner, nx_on_owner));
        let report = check(X86_64::default(), &mem, &roots, &out, &policy);
        assert!(report.is_ok(), "{report:#x?}");
        judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
    }
}

#[test]
fn pae_roots_off_a_page_boundary_keep_their_sharing() {
    // Two PDPTs in one page (at 0x20 and 0x60), each with a private PD at
    // entry 0; both name one kernel PD at entry 3 (QEMU's accessed bit set).
    let mut img = Img::new();
    let page = img.alloc();
    let (r0, r1) = (page + 0x20, page + 0x60);
    let (pd0, pd1, kpd, kpt, pt0) = (
        img.alloc(),
        img.alloc(),
        img.alloc(),
        img.alloc(),
        img.alloc(),
    );
    img.put(r0, 0, pd0 | P | A);
    img.put(r1, 0, pd1 | P);
    img.put(r0, 3, kpd | P | A);
    img.put(r1, 3, kpd | P | A);
    img.put(kpd, 0, kpt | DIR | NX);
    img.put(kpd, 1, 0x0060_0000 | P | RW | PS); // 2 MiB of device memory
    let k = img.data(0x6b);
    img.put(kpt, 0, k | P | RW | A);
    img.put(pd0, 0, pt0 | DIR);
    let u = img.data(0x75);
    img.put(pt0, 0, u | DIR);
    img.put(pd1, 0, pt0 | DIR);
    let (mem, roots) = (img.buf, vec![PhysAddr(r0 | 0x8), PhysAddr(r1)]);
    let policy = Policy::default();
    let out = run(Pae::default(), &mem, &roots, &policy);
    let st = out.stats();
    // The kernel PD, and the PT both private PDs name.
    assert_eq!((st.aliases_linked, st.device_pages_kept), (2, 1));
    let r = out.roots();
    assert!(r.iter().all(|r| r.0 % 32 == 0 && r.0 >> 32 == 0));
    let (e0, e1) = (word(&out, r[0].0 + 24), word(&out, r[1].0 + 24));
    assert_eq!(target(e0), target(e1), "one kernel PD after");
    // Bits 5..=8 are reserved in a PDPTE: the accessed bit QEMU left in
    // the source is read, but a CPU loading these PDPTEs would refuse it.
    for e in [e0, e1, word(&out, r[0].0), word(&out, r[1].0)] {
        assert_eq!(
            e & (RW | US | A | PS | NX | 0x1C0),
            0,
            "a PDPTE holds no {e:#x}"
        );
    }
    let report = check(Pae::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    assert_eq!(report.aliases_checked, 2);
    judge(model64::PAE, &mem, &roots, &out, &policy).unwrap();
}

/// A root mapping a 1 GiB device page (1 GiB at 1 GiB, outside memory) at
/// the canonical upper-half VA `0xffff_8000_4000_0000`.
fn gig_device() -> (Vec<u8>, Vec<PhysAddr>, u64) {
    let mut img = Img::new();
    let (root, pdpt) = (img.alloc(), img.alloc());
    img.put(root, 256, pdpt | DIR);
    img.put(pdpt, 1, GIG_DEVICE | P | RW | A | PS | 0x18 | NX);
    (img.buf, vec![PhysAddr(root)], 0xffff_8000_4000_0000)
}

#[test]
fn split_large_maps_a_1gib_page_as_4kib_pages() {
    // The decision: `split_large` means 4 KiB pages, whatever the size
    // (a 1 GiB page is not left as 2 MiB pages).
    let (mem, roots, va) = gig_device();
    let new = |out: &Compacted, va: u64| {
        let m = model64::Mem {
            base: out.layout.base.0,
            bytes: &out.image,
        };
        model64::translate(model64::X64, m, out.roots()[0].0, va).unwrap()
    };
    let keep = Policy::default();
    let out = run(X86_64::default(), &mem, &roots, &keep);
    assert_eq!(
        (out.stats().tables_written, out.stats().device_pages_kept),
        (2, 1)
    );
    assert_eq!(new(&out, va).size, 1 << 30);
    let split = Policy {
        split_large: true,
        ..Policy::default()
    };
    let out = run(X86_64::default(), &mem, &roots, &split);
    // Root, PDPT, one PD, 512 PTs; every 4 KiB piece kept in place.
    assert_eq!(out.stats().tables_written, 2 + 1 + 512);
    assert_eq!(out.stats().device_pages_kept, 1 << 18);
    let last = new(&out, va + (1 << 30) - 4096);
    assert_eq!(
        (last.size, last.pa, last.rw, last.x),
        (4096, GIG_DEVICE + (1 << 30) - 4096, true, false)
    );
    let report = check(X86_64::default(), &mem, &roots, &out, &split);
    assert!(report.is_ok(), "{report:#x?}");
    judge(model64::X64, &mem, &roots, &out, &split).unwrap();
}

#[test]
fn a_skip_inside_a_1gib_page_splits_it_one_size_at_a_time() {
    let (mem, roots, va) = gig_device();
    // One 4 KiB page, given as a canonical upper-half VA.
    let hole = va + 0x1234_5000;
    let policy = Policy {
        skip: vec![hole..hole + 4096],
        ..Policy::default()
    };
    let out = run(X86_64::default(), &mem, &roots, &policy);
    let st = out.stats();
    // 511 pieces of 2 MiB, the cut one as 511 pages of 4 KiB.
    assert_eq!((st.pages_skipped, st.device_pages_kept), (1, 511 + 511));
    assert_eq!(st.tables_written, 2 + 1 + 1);
    let m = model64::Mem {
        base: out.layout.base.0,
        bytes: &out.image,
    };
    let at = |v: u64| model64::translate(model64::X64, m, out.roots()[0].0, v);
    assert!(at(hole).is_none());
    assert_eq!(at(va).unwrap().size, 1 << 21);
    assert_eq!(at(hole + 4096).unwrap().size, 4096);
    assert_eq!(at(hole + (2 << 20)).unwrap().size, 1 << 21);
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
}

// ---------------------------------------------------------------------------
// Damage verify (and the model) must catch.

#[test]
fn verify_catches_nx_dropped_from_a_rebuilt_upper_entry() {
    let policy = Policy::default();
    // The alias entry: the user root's NX link to the shared PDPT.
    let (mem, roots) = pti(false);
    let mut out = run(X86_64::default(), &mem, &roots, &policy);
    let at = out.roots()[1].0;
    let v = word(&out, at) & !NX;
    set_word(&mut out, at, v);
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(
        report.mismatches.contains(&Mismatch::Sharing {
            space: ptwalk::SpaceId(1),
            va: VirtAddr(0),
            level: Level(4),
        }),
        "{report:#x?}"
    );
    assert!(judge(model64::X64, &mem, &roots, &out, &policy).is_err());

    // An entry inside the shared PDPT, under the owner's NX PML4 entry:
    // the owner's pages stay NX either way, the other root's do not.
    let (mut mem, roots) = pti(true);
    let pdpt = target(u64::from_le_bytes(
        mem[roots[0].0 as usize..][..8].try_into().unwrap(),
    ));
    mem[pdpt as usize + 7] |= 0x80; // NX on PDPT entry 0
    let mut out = run(X86_64::default(), &mem, &roots, &policy);
    assert!(check(X86_64::default(), &mem, &roots, &out, &policy).is_ok());
    let new_pdpt = target(word(&out, out.roots()[0].0));
    let v = word(&out, new_pdpt) & !NX;
    set_word(&mut out, new_pdpt, v);
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    let caught = report.mismatches.iter().any(|m| {
        matches!(m, Mismatch::PathAccess { level: Level(3), expected, got, .. }
            if !expected.executable() && got.executable())
    });
    assert!(caught, "{report:#x?}");
    assert!(judge(model64::X64, &mem, &roots, &out, &policy).is_err());
}

#[test]
fn verify_catches_a_shared_pdpt_duplicated() {
    let (mem, roots) = kernel_shared(3);
    let policy = Policy::default();
    let mut out = run(X86_64::default(), &mem, &roots, &policy);
    let entry = out.roots()[2].0 + 256 * 8;
    let shared = target(word(&out, entry));
    // A copy of the kernel PDPT, named by root 2 instead.
    let copy = append_page(&mut out);
    for i in 0..512 {
        let v = word(&out, shared + 8 * i);
        set_word(&mut out, copy + 8 * i, v);
    }
    let v = (word(&out, entry) & !target(!0)) | copy;
    set_word(&mut out, entry, v);
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    let sharing = Mismatch::Sharing {
        space: ptwalk::SpaceId(2),
        va: VirtAddr(0xffff_8000_0000_0000),
        level: Level(4),
    };
    assert!(report.mismatches.contains(&sharing), "{report:#x?}");
    assert!(judge(model64::X64, &mem, &roots, &out, &policy).is_err());
}

#[test]
fn verify_catches_a_1gib_page_split_silently() {
    let (mem, roots, va) = gig_device();
    let policy = Policy::default();
    let mut out = run(X86_64::default(), &mem, &roots, &policy);
    let pdpt = target(word(&out, out.roots()[0].0 + 256 * 8));
    let big = word(&out, pdpt + 8);
    // The same frames, as 512 pages of 2 MiB under a new PD.
    let pd = append_page(&mut out);
    for i in 0..512 {
        set_word(&mut out, pd + 8 * i, big + (i << 21));
    }
    set_word(&mut out, pdpt + 8, pd | DIR | (big & NX));
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    let size = Mismatch::PageSize {
        space: ptwalk::SpaceId(0),
        va: VirtAddr(va),
        expected: 1 << 30,
        got: 1 << 21,
    };
    assert!(report.mismatches.contains(&size), "{report:#x?}");
    // Nothing else differs: same frames, same access.
    assert!(
        report
            .mismatches
            .iter()
            .all(|m| matches!(m, Mismatch::PageSize { .. })),
        "{report:#x?}"
    );
    assert!(judge(model64::X64, &mem, &roots, &out, &policy).is_err());
}

// ---------------------------------------------------------------------------
// Frame identity with real 1 GiB pages.

/// A compacted snapshot seen without copying it: the tables, and each
/// placed extent lent from the source memory.
struct View<'a, M: ?Sized> {
    layout: &'a Layout,
    src: &'a M,
}

impl<M: PhysMem + ?Sized> PhysMem for View<'_, M> {
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        let (start, end) = (pa.0, pa.0 + len as u64);
        let tables = self.layout.tables_base.0;
        if start >= tables && end <= self.layout.end().0 {
            let off = (start - tables) as usize;
            return Ok(&self.layout.tables[off..off + len]);
        }
        for e in &self.layout.extents {
            if e.dst.0 <= start && end <= e.dst.0 + e.len {
                return self.src.lend(PhysAddr(e.src.0 + (start - e.dst.0)), len);
            }
        }
        Err(MemError::OutOfBounds {
            pa,
            len: len as u64,
        })
    }
}

#[test]
fn gib_and_2mib_pages_stay_large_aligned_and_one_frame() {
    const GIB: u64 = 1 << 30;
    const MIB2: u64 = 1 << 21;
    // Tables low; 1 GiB of memory at 1 GiB (zeroed lazily: only the
    // tagged pages are touched); 2 MiB at 4 GiB.
    let mut img = Img::new();
    let roots: Vec<u64> = (0..2).map(|_| img.alloc()).collect();
    let (a, b, c) = (img.alloc(), img.alloc(), img.alloc());
    img.put(roots[0], 0, a | DIR);
    img.put(roots[1], 0, a | DIR | NX);
    img.put(a, 1, GIB | P | RW | A | PS);
    img.put(a, 2, b | DIR);
    img.put(b, 0, (GIB + 3 * MIB2) | P | A | PS | NX);
    img.put(b, 1, c | DIR);
    img.put(b, 2, DEVICE | P | RW | A | PS);
    img.put(c, 0, (GIB + 0x5000) | P | A);
    img.put(c, 1, (DEVICE + 0x3000) | P | RW | A);
    let mut gig = vec![0u8; GIB as usize];
    let mut two = vec![0u8; MIB2 as usize];
    let tag = |buf: &mut [u8], off: u64, tag: u64| {
        buf[off as usize..][..8].copy_from_slice(&tag.to_le_bytes());
    };
    tag(&mut gig, 0x5000, 1);
    tag(&mut gig, 3 * MIB2, 2);
    tag(&mut gig, GIB - 4096, 3);
    tag(&mut two, 0x3000, 4);
    let regions = [
        ptwalk::Image::new(PhysAddr(0), img.buf.as_slice()),
        ptwalk::Image::new(PhysAddr(GIB), gig.as_slice()),
        ptwalk::Image::new(PhysAddr(DEVICE), two.as_slice()),
    ];
    let mem = ptwalk::Regions::new(&regions).unwrap();
    let roots: Vec<PhysAddr> = roots.into_iter().map(PhysAddr).collect();
    let policy = Policy::default();
    let layout = Compactor::new_in(X86_64::default(), &mem, &roots)
        .unwrap()
        .plan()
        .unwrap();
    let st = layout.stats;
    // The 1 GiB frame (with the 2 MiB and 4 KiB pages inside it) and the
    // 2 MiB frame (with its 4 KiB page) are copied once each, aligned.
    assert_eq!(st.pages_copied, (GIB + MIB2) >> 12);
    assert_eq!(st.frames_multi_size, 512 + 1 + 1);
    assert_eq!(st.aliases_linked, 1);
    let extent = |src: u64| layout.extents.iter().find(|e| e.src.0 == src).unwrap();
    assert_eq!((extent(GIB).len, extent(GIB).dst.0 % GIB), (GIB, 0));
    assert_eq!((extent(DEVICE).len, extent(DEVICE).dst.0 % MIB2), (MIB2, 0));
    let view = View {
        layout: &layout,
        src: &mem,
    };
    let report = verify(
        X86_64::default(),
        &mem,
        &roots,
        &view,
        &layout.roots,
        &policy,
    );
    assert!(report.is_ok(), "{report:#x?}");
    // Every page of the 1 GiB page and of the 2 MiB page (the pages inside
    // them are the same frames).
    assert_eq!(report.frames_compared, (GIB + MIB2) >> 12);
}

/// A synthetic 16-root x86-64 guest in 64 MiB: the kernel half shared at
/// the PML4-entry level (a direct map of four 2 MiB pages and 256 4 KiB
/// pages scattered over 32 MiB), each process 64 private pages scattered
/// likewise. Compaction keeps 67 tables and 15 aliases and packs the data.
#[test]
fn sixteen_x86_64_roots_compact_to_their_data() {
    const MIB: u64 = 1 << 20;
    let mut img = Img::new();
    img.buf.resize((64 * MIB) as usize, 0);
    let mut next = 0x1000;
    let mut table = || {
        next += 0x1000;
        next
    };
    let roots: Vec<u64> = (0..16).map(|_| table()).collect();
    let (k, kd, kt) = (table(), table(), table());
    img.put(roots[0], 256, k | DIR);
    img.put(k, 0, kd | DIR);
    for i in 0..4 {
        img.put(kd, i, (16 * MIB + i * 2 * MIB) | P | RW | A | PS | NX);
    }
    img.put(kd, 8, kt | DIR);
    for i in 0..256 {
        let pa = 24 * MIB + i * 32 * 4096;
        img.buf[pa as usize..][..8].copy_from_slice(&(0x6b00 + i).to_le_bytes());
        img.put(kt, i, pa | P | RW | A);
    }
    for (s, &r) in roots.iter().enumerate() {
        if s > 0 {
            img.put(r, 256, k | DIR);
        }
        let (pdpt, pd) = (table(), table());
        img.put(r, 0, pdpt | DIR);
        img.put(pdpt, 0, pd | DIR);
        let pt = table();
        img.put(pd, 2, pt | DIR);
        for i in 0..64 {
            let pa = 32 * MIB + (s as u64 * 64 + i) * 8 * 4096 + 4096;
            img.buf[pa as usize..][..8].copy_from_slice(&(s as u64 * 1000 + i).to_le_bytes());
            img.put(pt, i * 3, pa | DIR | if i % 2 == 0 { NX } else { 0 });
        }
    }
    let (mem, roots) = (img.buf, roots.into_iter().map(PhysAddr).collect::<Vec<_>>());
    let policy = Policy::default();
    let out = run(X86_64::default(), &mem, &roots, &policy);
    let st = *out.stats();
    eprintln!(
        "16-root x86-64: before {} bytes ({} tables), after {} bytes = data {} + padding {} + \
         tables {} ({} tables, {} aliases linked)",
        mem.len(),
        16 + 3 + 3 * 16,
        st.output_bytes,
        st.data_bytes,
        st.padding_bytes,
        st.table_bytes,
        st.tables_written,
        st.aliases_linked
    );
    assert_eq!(
        (st.tables_written, st.aliases_linked),
        (16 + 3 + 3 * 16, 15)
    );
    assert_eq!(st.pages_copied, 4 * 512 + 256 + 16 * 64);
    assert!(st.output_bytes < mem.len() as u64 / 3, "{st:?}");
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
}

#[test]
fn a_1gib_page_partly_inside_memory_keeps_its_whole_2mib_pieces() {
    const MIB2: u64 = 1 << 21;
    // Memory is 4 MiB + 8 KiB; a 1 GiB page maps PA 0 at VA 1 GiB.
    let mut img = Img::new();
    let (root, pdpt) = (img.alloc(), img.alloc());
    img.put(root, 0, pdpt | DIR);
    img.put(pdpt, 1, P | RW | US | A | PS);
    img.buf.resize(IMAGE, 0);
    for (n, page) in img.buf.chunks_mut(4096).enumerate().skip(3) {
        page[..8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    let (mem, roots) = (img.buf, vec![PhysAddr(root)]);
    let policy = Policy::default();
    let out = run(X86_64::default(), &mem, &roots, &policy);
    let st = out.stats();
    // Two 2 MiB pieces and two 4 KiB pages copied; the rest of the third
    // piece (510 pages) and 509 pieces of 2 MiB kept in place.
    assert_eq!(st.pages_copied, 2 * 512 + 2);
    assert_eq!(st.device_pages_kept, 510 + 509);
    assert_eq!(st.large_pages_split, 2);
    assert_eq!(st.tables_written, 2 + 1 + 1);
    let m = model64::Mem {
        base: out.layout.base.0,
        bytes: &out.image,
    };
    let at = |v: u64| model64::translate(model64::X64, m, out.roots()[0].0, v).unwrap();
    let gib = 1 << 30;
    assert_eq!(at(gib).size, MIB2);
    assert_eq!(at(gib + MIB2).size, MIB2);
    assert_eq!(
        (at(gib + 2 * MIB2).size, at(gib + 2 * MIB2 + 0x3000).size),
        (4096, 4096)
    );
    let device = at(gib + 3 * MIB2);
    assert_eq!((device.size, device.pa), (MIB2, 3 * MIB2));
    // The output lies clear of the device memory it maps in place.
    assert!(out.layout.base.0 >= 1 << 30, "{:#x}", out.layout.base.0);
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
}

/// Compacting a compacted snapshot changes nothing but placement, in
/// every mode.
#[test]
fn compacting_twice_is_a_fixed_point_in_every_mode() {
    fn twice<Q: PagingMode>(mode: Q, s: &Snap) -> Result<(), String> {
        let (mem, roots, policy) = (s.image(), s.roots(), s.policy());
        let Ok(once) = compact_in(mode, &mem, &roots, &policy, None) else {
            return Ok(()); // refusals are the round trip's business
        };
        let again = Compactor::new_in(mode, &once, once.roots())
            .and_then(|c| c.policy(policy.clone()).run())
            .map_err(|e| format!("second compaction: {e}"))?;
        let report = verify(mode, &once, once.roots(), &again, again.roots(), &policy);
        let (a, b) = (once.stats(), again.stats());
        if !report.is_ok()
            || (a.pages_copied, a.tables_written, a.device_pages_kept)
                != (b.pages_copied, b.tables_written, b.device_pages_kept)
            || b.pages_skipped != 0
            || b.large_pages_split != 0
        {
            return Err(format!("{report:#x?}\n{a:?}\n{b:?}"));
        }
        Ok(())
    }
    let mut rng = Gen::new(QC_SIZE);
    for kind in [Kind::Pae, Kind::X64, Kind::La57] {
        for _ in 0..common::qc_tests(20) {
            let s = Snap::of(kind, &mut rng);
            if let Err(why) = with_mode!(kind, |m| twice(m, &s)) {
                panic!("{why}\n{s:?}");
            }
        }
    }
}

#[test]
fn the_last_gib_of_the_address_space_compacts_and_splits() {
    // Entry 511 at every level: a 1 GiB device page at
    // 0xffff_ffff_c000_0000, whose very last 4 KiB page is skipped.
    let mut img = Img::new();
    let (root, pdpt) = (img.alloc(), img.alloc());
    img.put(root, 511, pdpt | DIR);
    img.put(pdpt, 511, GIG_DEVICE | P | RW | A | PS);
    let (mem, roots) = (img.buf, vec![PhysAddr(root)]);
    let last = 0xffff_ffff_ffff_f000;
    let policy = Policy {
        skip: vec![last..u64::MAX],
        ..Policy::default()
    };
    let out = run(X86_64::default(), &mem, &roots, &policy);
    let st = out.stats();
    assert_eq!((st.pages_skipped, st.device_pages_kept), (1, 511 + 511));
    let m = model64::Mem {
        base: out.layout.base.0,
        bytes: &out.image,
    };
    let at = |v: u64| model64::translate(model64::X64, m, out.roots()[0].0, v);
    assert!(at(last).is_none());
    assert_eq!(at(last - 4096).unwrap().size, 4096);
    assert_eq!(at(0xffff_ffff_c000_0000).unwrap().size, 1 << 21);
    let report = check(X86_64::default(), &mem, &roots, &out, &policy);
    assert!(report.is_ok(), "{report:#x?}");
    assert_eq!(report.pages_checked, (1 << 18) - 1);
    judge(model64::X64, &mem, &roots, &out, &policy).unwrap();
}

// ---------------------------------------------------------------------------
// Real guests: the table extracts of tests/fixtures/guests (QEMU TCG,
// Debian kernels; only table pages, so every data frame lies outside this
// memory and is kept in place as device memory would be).

/// The extract's table pages as regions of memory, and its roots.
fn real_guest(name: &str) -> (Vec<ptwalk::Image<Vec<u8>>>, Vec<PhysAddr>, u64) {
    use std::io::Read;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/guests")
        .join(name);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let hex = |v: &serde_json::Value| {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let roots = meta["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| PhysAddr(hex(&r["pa"])))
        .collect();
    let efer = hex(&meta["vcpus"][0]["efer"]);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join("tables.bin.gz")).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let mut pages: Vec<(u64, &[u8])> = raw
        .chunks_exact(8 + 4096)
        .map(|r| (u64::from_le_bytes(r[..8].try_into().unwrap()), &r[8..]))
        .collect();
    pages.sort_by_key(|p| p.0);
    let mut images: Vec<ptwalk::Image<Vec<u8>>> = Vec::new();
    let mut run: Option<(u64, Vec<u8>)> = None;
    for (pa, bytes) in pages {
        match &mut run {
            Some((base, buf)) if *base + buf.len() as u64 == pa => buf.extend_from_slice(bytes),
            _ => {
                if let Some((base, buf)) = run.replace((pa, bytes.to_vec())) {
                    images.push(ptwalk::Image::new(PhysAddr(base), buf));
                }
            }
        }
    }
    let (base, buf) = run.unwrap();
    images.push(ptwalk::Image::new(PhysAddr(base), buf));
    (images, roots, efer)
}

#[test]
fn real_guests_compact_and_verify_in_every_mode() {
    const EFER_NXE: u64 = 1 << 11;
    for name in ["pae", "x86_64-pti", "x86_64-la57"] {
        let (images, roots, efer) = real_guest(name);
        let mem = ptwalk::Regions::new(&images).unwrap();
        let policy = Policy::default();
        let nxe = efer & EFER_NXE != 0;
        let (stats, report) = match name {
            "pae" => {
                let m = Pae::default().with_nxe(nxe);
                let out = Compactor::new_in(m, &mem, &roots).unwrap().run().unwrap();
                (
                    *out.stats(),
                    verify(m, &mem, &roots, &out, out.roots(), &policy),
                )
            }
            _ => {
                let m = X86_64::default()
                    .with_la57(name.ends_with("la57"))
                    .with_nxe(nxe);
                let out = Compactor::new_in(m, &mem, &roots).unwrap().run().unwrap();
                (
                    *out.stats(),
                    verify(m, &mem, &roots, &out, out.roots(), &policy),
                )
            }
        };
        eprintln!(
            "{name}: {} roots, {} table pages in, {} tables out, {} aliases linked, {} \
             invalidated, {} device pages kept, {} pages checked",
            roots.len(),
            images.iter().map(|i| i.bytes().len() / 4096).sum::<usize>(),
            stats.tables_written,
            stats.aliases_linked,
            stats.aliases_invalidated,
            stats.device_pages_kept,
            report.pages_checked
        );
        assert!(report.is_ok(), "{name}: {report:#x?}");
        assert!(
            stats.aliases_linked > 0
                && report.aliases_checked == stats.aliases_linked + stats.aliases_invalidated
        );
        assert!(report.pages_checked > 1000, "{name}");
    }
}
