//! Verification of a compacted snapshot against its original, written
//! apart from the compactor so that the two cannot share a mistake.
//!
//! It walks both snapshots with its own small recursive, alias-aware
//! descent (each shared table is visited once, by its owner), derives what
//! the compacted snapshot must hold from the original and the policy's
//! *parameters* (it re-states the policy's rules rather than calling
//! them), and checks:
//!
//! - every kept 4 KiB page is mapped, every skipped or dropped one is not,
//!   and nothing else is;
//! - effective access (RW, US and NX along the path, copy-on-write marks)
//!   is what the policy asks for, and so is the access of the path from
//!   every level down (what a space sharing a table at that level sees
//!   through it, its own entries above aside);
//! - page sizes: large pages (4 MiB, 2 MiB, 1 GiB) stay large unless the
//!   policy splits them, or a skipped range or the end of memory cuts them
//!   (then one size at a time);
//! - frame identity, both ways: a source frame is behind exactly one frame
//!   after, and two source frames never share one; copied frames have the
//!   same contents (each distinct pair compared once);
//! - device frames (outside the original memory) keep their address and
//!   lie outside the compacted memory;
//! - sharing, at every level: every alias that can stay shared points at
//!   the owner's table with the same access along our path, or is invalid
//!   when the owner kept nothing there; every alias after is one before.
//!
//! Every VA it reports is canonical, in every mode.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::Policy;
use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::lookup::{Found, lookup};
use crate::mem::PhysMem;
use crate::mode::{Access, COW_BIT, Entry, PagingMode, step};

/// One difference found by [`verify`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Mismatch {
    /// A kept page is not mapped in the compacted snapshot.
    Missing {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
    },
    /// A page is mapped that should not be (skipped, dropped, or unmapped
    /// in the original).
    Unexpected {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
    },
    /// The page's contents differ.
    Contents {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
    },
    /// The effective access or the copy-on-write mark differs.
    Access {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
        /// Expected access and copy-on-write mark.
        expected: (Access, bool),
        /// What the compacted snapshot has.
        got: (Access, bool),
    },
    /// The effective access is the same, but not the access the entries
    /// below some level grant: a space reaching that table through a
    /// shared entry would see another access than before.
    PathAccess {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
        /// The lowest level whose table's subtree grants another access.
        level: Level,
        /// The access the entries from that level down must grant.
        expected: Access,
        /// What they grant.
        got: Access,
    },
    /// The compacted snapshot has another number of roots than the original.
    Roots {
        /// Roots of the original.
        original: usize,
        /// Roots given for the compacted snapshot.
        compacted: usize,
    },
    /// An alias of the original is not shared in the compacted snapshot
    /// (or the reverse), or an alias with nothing behind it is not invalid.
    Sharing {
        /// The aliasing space.
        space: SpaceId,
        /// Its VA.
        va: VirtAddr,
        /// The entry's level.
        level: Level,
    },
    /// One source frame is behind two different frames after: a write
    /// through one mapping would not be seen through the other.
    FrameSplit {
        /// The source frame.
        src: PhysAddr,
    },
    /// Two source frames share one frame after.
    FrameMerged {
        /// The shared frame.
        dst: PhysAddr,
    },
    /// A device page (outside the original memory) maps another address.
    DeviceMoved {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
    },
    /// Device memory mapped in place lies inside the compacted memory:
    /// the restored guest would find RAM (or copied data) there.
    DeviceCovered {
        /// The device frame.
        pa: PhysAddr,
    },
    /// A page is mapped with another page size than it must be (large
    /// pages stay large unless split by the policy or cut by a skipped
    /// range or the end of memory; small pages stay small).
    PageSize {
        /// The space.
        space: SpaceId,
        /// The page's VA.
        va: VirtAddr,
        /// The size it must have.
        expected: u64,
        /// The size it has.
        got: u64,
    },
    /// A table of the compacted snapshot cannot be read.
    Fault {
        /// The space.
        space: SpaceId,
        /// The VA of the entry pointing at it.
        va: VirtAddr,
        /// The level of that entry.
        level: Level,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cow = |c: bool| if c { ",cow" } else { "" };
        match *self {
            Mismatch::Missing { space, va } => write!(f, "{space}: {va} is not mapped"),
            Mismatch::Unexpected { space, va } => write!(f, "{space}: {va} should not be mapped"),
            Mismatch::Contents { space, va } => write!(f, "{space}: {va} has other contents"),
            Mismatch::Access {
                space,
                va,
                expected,
                got,
            } => write!(
                f,
                "{space}: {va} has access {}{} instead of {}{}",
                got.0,
                cow(got.1),
                expected.0,
                cow(expected.1)
            ),
            Mismatch::PathAccess {
                space,
                va,
                level,
                expected,
                got,
            } => write!(
                f,
                "{space}: {va} is granted {got} instead of {expected} by its entries from level \
                 {level} down (a space sharing that table would see another access)"
            ),
            Mismatch::Roots {
                original,
                compacted,
            } => write!(
                f,
                "{compacted} compacted roots for {original} original roots"
            ),
            Mismatch::Sharing { space, va, level } => write!(
                f,
                "{space}: the level-{level} entry at {va} is not shared as before"
            ),
            Mismatch::FrameSplit { src } => {
                write!(f, "source frame {src} is behind two different frames")
            }
            Mismatch::FrameMerged { dst } => {
                write!(f, "frame {dst} holds two different source frames")
            }
            Mismatch::DeviceMoved { space, va } => {
                write!(f, "{space}: device page at {va} no longer maps its address")
            }
            Mismatch::DeviceCovered { pa } => {
                write!(f, "device memory at {pa} lies inside the compacted memory")
            }
            Mismatch::PageSize {
                space,
                va,
                expected,
                got,
            } => write!(
                f,
                "{space}: {va} is mapped by a {got:#x}-byte page instead of {expected:#x}"
            ),
            Mismatch::Fault { space, va, level } => write!(
                f,
                "{space}: the level-{level} entry at {va} points at an unreadable table"
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// 4 KiB pages compared (per space and VA).
    pub pages_checked: u64,
    /// Distinct 4 KiB frames whose contents were compared.
    pub frames_compared: u64,
    /// Aliases compared.
    pub aliases_checked: u64,
    /// The first mismatches (at most 32).
    pub mismatches: Vec<Mismatch>,
    /// How many mismatches there were in all.
    pub total_mismatches: u64,
}

impl VerifyReport {
    /// Whether nothing differs.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.total_mismatches == 0
    }

    fn push(&mut self, m: Mismatch) {
        self.total_mismatches += 1;
        if self.mismatches.len() < 32 {
            self.mismatches.push(m);
        }
    }
}

/// A leaf of a table its space owns.
#[derive(Clone, Copy, Debug)]
struct Rec {
    space: u32,
    va: u64,
    pa: u64,
    size_log2: u32,
    /// Level of the table holding the leaf entry.
    level: Level,
    /// Along the whole path.
    access: Access,
    /// The access of the path's entries from each level down
    /// ([`Levels`]): what a space sharing a table at that level sees of
    /// this page, its own path above aside.
    below: Levels,
    cow: bool,
    /// The leaf entry's own RW bit (what copy-on-write reads).
    rw: bool,
    /// The page size (log2) the compacted snapshot must map it with; 0
    /// when any size will do (set on the expected side only).
    expect_log2: u32,
}

/// One [`Access`] per level (1..=5), three bits each: level `l` at bits
/// `3 * (l - 1)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Levels(u16);

impl Levels {
    fn get(self, level: u8) -> Access {
        Access::from_bits((self.0 >> (3 * (u32::from(level) - 1))) as u8)
    }

    fn with(self, level: u8, access: Access) -> Levels {
        let at = 3 * (u32::from(level) - 1);
        Levels((self.0 & !(7 << at)) | (u16::from(access.bits()) << at))
    }

    /// From the entries' own accesses (`own`, levels `leaf..=levels`; a
    /// large page's entry stands for the levels below it too) to the access
    /// of the path from each level down: the AND of levels `1..=l`.
    fn below(own: Levels, leaf: u8, levels: u8) -> Levels {
        let mut acc = Access::ALL;
        let mut out = Levels::default();
        for l in 1..=levels {
            acc = acc & own.get(l.max(leaf));
            out = out.with(l, acc);
        }
        out
    }

    /// Writes taken away at every level (a copy-on-write leaf).
    fn read_only(self) -> Levels {
        Levels(self.0 & !0b001_001_001_001_001)
    }
}

/// An entry reaching a table another (space, VA) reached first.
#[derive(Clone, Copy, Debug)]
struct Alias {
    space: u32,
    va: u64,
    level: Level,
    size_log2: u32,
    /// Our VA's position in the translated space (`va` without its
    /// canonical sign extension).
    linear: u64,
    /// Along our path, our entry included.
    access: Access,
    /// The own access of each entry on our path, ours included.
    own: Levels,
    /// The table it reaches.
    table: u64,
    owner: u32,
    owner_va: u64,
}

/// One snapshot, as the verifier's own descent sees it.
#[derive(Default)]
struct Tree {
    leaves: Vec<Rec>,
    aliases: Vec<Alias>,
    faults: Vec<(u32, u64, Level)>,
}

/// The verifier's descent: a table, its level and the VA it starts at.
struct Descent<'a, P, M: ?Sized> {
    mode: P,
    mem: &'a M,
    /// `(table, level)` → first `(space, va)` to reach it; `None` for a
    /// descent that follows every entry (the hardware's view).
    owners: Option<BTreeMap<(u64, u8), (u32, u64)>>,
    out: Tree,
}

impl<P: PagingMode, M: PhysMem + ?Sized> Descent<'_, P, M> {
    /// Records the entries of `table` (at `level`, mapping from linear VA
    /// `va0`) under a path granting `access` whose entries grant `own`
    /// each; VAs recorded canonical.
    fn table(
        &mut self,
        space: u32,
        table: u64,
        level: Level,
        va0: u64,
        access: Access,
        own: Levels,
    ) {
        let Ok(bytes) = self.mem.lend(PhysAddr(table), P::table_bytes(level)) else {
            return;
        };
        for i in 0..P::entries(level) {
            let raw = P::load(bytes, i);
            let linear = va0 + ((i as u64) << P::shift(level));
            let va = self.mode.canonical(linear);
            let s = step(self.mode, raw, level, access);
            let here = s.access;
            let own = own.with(level.0, self.mode.access(raw, level));
            match s.entry {
                // Reserved bits: the hardware translates nothing.
                Entry::Absent | Entry::Reserved(_) => {}
                Entry::Page(pa) => self.out.leaves.push(Rec {
                    space,
                    va,
                    pa: pa.0,
                    size_log2: P::shift(level),
                    level,
                    access: here,
                    below: Levels::below(own, level.0, self.mode.levels()),
                    cow: raw & COW_BIT != 0,
                    rw: self.mode.access(raw, level).writable(),
                    expect_log2: 0,
                }),
                Entry::Table(t) => {
                    let below = Level(level.0 - 1);
                    if self.mem.lend(t, P::table_bytes(below)).is_err() {
                        self.out.faults.push((space, va, level));
                        continue;
                    }
                    if let Some(owners) = &mut self.owners {
                        if let Some(&(owner, owner_va)) = owners.get(&(t.0, below.0)) {
                            self.out.aliases.push(Alias {
                                space,
                                va,
                                level,
                                size_log2: P::shift(level),
                                linear,
                                access: here,
                                own,
                                table: t.0,
                                owner,
                                owner_va,
                            });
                            continue;
                        }
                        owners.insert((t.0, below.0), (space, va));
                    }
                    self.table(space, t.0, below, linear, here, own);
                }
            }
        }
    }
}

/// Every space of a snapshot, alias-aware.
fn tree<P: PagingMode, M: PhysMem + ?Sized>(mode: P, mem: &M, roots: &[PhysAddr]) -> Tree {
    let mut d = Descent {
        mode,
        mem,
        owners: Some(BTreeMap::new()),
        out: Tree::default(),
    };
    for (s, root) in roots.iter().enumerate() {
        d.table(
            s as u32,
            mode.root_table(*root).0,
            mode.root_level(),
            0,
            Access::ALL,
            Levels::default(),
        );
    }
    d.out
}

/// What the entry at `level` for `va` under `root` is.
#[derive(PartialEq, Eq)]
enum At {
    /// It, or a table above it, is absent.
    Absent,
    /// A page, or an unreadable table, on the way.
    Other,
    /// A table, with the access along the path down to it.
    Table(u64, Access),
}

fn entry_at<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    root: PhysAddr,
    va: u64,
    level: Level,
) -> At {
    match lookup(mode, mem, mode.root_table(root), va, level) {
        Found::Entry {
            entry: Entry::Table(t),
            level: l,
            access,
            ..
        } if l == level => At::Table(t.0, access),
        Found::Entry {
            entry: Entry::Absent,
            ..
        } => At::Absent,
        _ => At::Other,
    }
}

/// The policy's rules, re-stated from its parameters.
struct Rules {
    /// Skipped ranges, sorted and merged.
    skip: Vec<(u64, u64)>,
    cow: bool,
    drop_device: bool,
    split_large: bool,
}

impl Rules {
    fn new(policy: &Policy) -> Rules {
        let mut ranges: Vec<(u64, u64)> = policy
            .skip
            .iter()
            .filter(|r| r.start < r.end)
            .map(|r| (r.start, r.end))
            .collect();
        ranges.sort_unstable();
        let mut skip: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges {
            match skip.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => skip.push((s, e)),
            }
        }
        Rules {
            skip,
            cow: policy.cow,
            drop_device: policy.drop_device_pages,
            split_large: policy.split_large,
        }
    }

    /// The merged skipped range holding `va`, if any.
    fn skip_at(&self, va: u64) -> Option<(u64, u64)> {
        let i = self.skip.partition_point(|&(_, e)| e <= va);
        self.skip.get(i).copied().filter(|&(s, _)| s <= va)
    }

    /// A 4 KiB page is left out when skipped ranges cover all of it.
    fn skipped(&self, va: u64) -> bool {
        self.covers(va, 4096)
    }

    /// Whether skipped ranges cover all of `[va, va + len)`.
    fn covers(&self, va: u64, len: u64) -> bool {
        self.skip_at(va)
            .is_some_and(|(_, e)| e >= va.saturating_add(len))
    }

    /// The leaf `r` (expected in the compacted snapshot) cut into the
    /// pieces the compacted snapshot must map, each with the page size
    /// (log2) it must have, 0 for any: large pages stay large, unless the
    /// policy splits them all (then any size will do: device memory no
    /// 4 KiB entry can address stays large), or a skipped range cuts them,
    /// or they lie partly inside memory: then they are cut one level down
    /// (a 1 GiB page into 2 MiB pages) and each piece judged again.
    fn expect<P: PagingMode, M: PhysMem + ?Sized>(&self, mem: &M, r: Rec, out: &mut Vec<Rec>) {
        let size = 1u64 << r.size_log2;
        if size == 4096 {
            out.push(Rec {
                expect_log2: 12,
                ..r
            });
            return;
        }
        if self.split_large || self.covers(r.va, size) {
            out.push(Rec {
                expect_log2: 0,
                ..r
            });
            return;
        }
        let i = self.skip.partition_point(|&(_, e)| e <= r.va);
        let cut = self
            .skip
            .get(i)
            .is_some_and(|&(s, _)| s < r.va.saturating_add(size));
        let whole = usize::try_from(size).is_ok_and(|n| mem.lend(PhysAddr(r.pa), n).is_ok());
        let mixed = !whole && {
            let inside = (0..size)
                .step_by(4096)
                .filter(|off| mem.lend(PhysAddr(r.pa + off), 4096).is_ok())
                .count() as u64;
            inside > 0 && inside < size / 4096
        };
        if !cut && !mixed {
            out.push(Rec {
                expect_log2: r.size_log2,
                ..r
            });
            return;
        }
        let level = Level(r.level.0 - 1);
        let step = 1u64 << P::shift(level);
        for off in (0..size).step_by(step as usize) {
            let piece = Rec {
                va: r.va + off,
                pa: r.pa + off,
                size_log2: P::shift(level),
                level,
                ..r
            };
            self.expect::<P, M>(mem, piece, out);
        }
    }

    /// An alias stays shared unless a skipped range touches our region at
    /// another VA than the owner's.
    fn stays_shared(&self, a: &Alias) -> bool {
        let (start, end) = (a.va, a.va.saturating_add(1 << a.size_log2));
        let i = self.skip.partition_point(|&(_, e)| e <= start);
        a.va == a.owner_va || self.skip.get(i).is_none_or(|&(s, _)| s >= end)
    }
}

/// One 4 KiB page as compared.
#[derive(Clone, Copy)]
struct Page {
    space: u32,
    va: u64,
    pa: u64,
    access: Access,
    below: Levels,
    cow: bool,
    rw: bool,
    size_log2: u32,
    expect_log2: u32,
}

fn pages(recs: &[Rec]) -> impl Iterator<Item = Page> + '_ {
    recs.iter().flat_map(|r| {
        (0..1u64 << r.size_log2).step_by(4096).map(move |off| Page {
            space: r.space,
            va: r.va + off,
            pa: r.pa + off,
            access: r.access,
            below: r.below,
            cow: r.cow,
            rw: r.rw,
            size_log2: r.size_log2,
            expect_log2: r.expect_log2,
        })
    })
}

/// A run of source frames and their copies, first met at (space, va).
#[derive(Clone, Copy)]
struct Pair {
    src: u64,
    dst: u64,
    len: u64,
    space: u32,
    va: u64,
}

/// Compares a compacted snapshot with the original it was made from under
/// `policy` (page contents read from `original`); see the module docs.
///
/// # Examples
///
/// ```
/// use ptwalk::compact::{Compactor, Policy, verify};
/// use ptwalk::{I686, PhysAddr};
///
/// let mut mem = vec![0u8; 0x3000];
/// mem[0x1000..0x1004].copy_from_slice(&0x2003u32.to_le_bytes()); // PDE 0 -> PT at 0x2000
/// mem[0x2000..0x2004].copy_from_slice(&0x0003u32.to_le_bytes()); // VA 0 -> frame 0
/// let roots = [PhysAddr(0x1000)];
/// let out = Compactor::new(&mem[..], &roots)?.run()?;
/// let report = verify(I686::default(), &mem[..], &roots, &out, out.roots(), &Policy::default());
/// assert!(report.is_ok() && report.pages_checked == 1);
/// # Ok::<(), ptwalk::compact::CompactError>(())
/// ```
pub fn verify<P: PagingMode, M: PhysMem + ?Sized, N: PhysMem + ?Sized>(
    mode: P,
    original: &M,
    roots: &[PhysAddr],
    compacted: &N,
    new_roots: &[PhysAddr],
    policy: &Policy,
) -> VerifyReport {
    verify_with_progress(mode, original, roots, compacted, new_roots, policy, |_| {})
}

/// [`verify`], calling `progress(frames)` every 4,096 frames compared
/// (16 MiB), e.g. to drive a progress bar or release mapped pages.
pub fn verify_with_progress<P: PagingMode, M: PhysMem + ?Sized, N: PhysMem + ?Sized>(
    mode: P,
    original: &M,
    roots: &[PhysAddr],
    compacted: &N,
    new_roots: &[PhysAddr],
    policy: &Policy,
    mut progress: impl FnMut(u64),
) -> VerifyReport {
    let mut report = VerifyReport::default();
    if roots.len() != new_roots.len() {
        report.push(Mismatch::Roots {
            original: roots.len(),
            compacted: new_roots.len(),
        });
        return report;
    }
    let rules = Rules::new(policy);
    let before = tree(mode, original, roots);
    let after = tree(mode, compacted, new_roots);
    for &(space, va, level) in &after.faults {
        report.push(Mismatch::Fault {
            space: SpaceId(space),
            va: VirtAddr(va),
            level,
        });
    }

    // What the compacted snapshot must own: the original's owned leaves,
    // plus the hardware's view of every alias that cannot stay shared.
    let mut leaves = before.leaves;
    let mut follow = Descent {
        mode,
        mem: original,
        owners: None,
        out: Tree::default(),
    };
    for a in before.aliases.iter().filter(|a| !rules.stays_shared(a)) {
        let below = Level(a.level.0 - 1);
        follow.table(a.space, a.table, below, a.linear, a.access, a.own);
    }
    leaves.append(&mut follow.out.leaves);
    leaves.sort_by_key(|r| (r.space, r.va));
    let mut expected = Vec::with_capacity(leaves.len());
    for r in leaves {
        rules.expect::<P, M>(original, r, &mut expected);
    }

    let mut pairs: Vec<Pair> = Vec::new();
    let mut devices: Vec<u64> = Vec::new();
    let mut got = pages(&after.leaves).peekable();
    let key = |p: &Page| (p.space, p.va);
    for want in pages(&expected) {
        let device = original.lend(PhysAddr(want.pa), 4096).is_err();
        if rules.skipped(want.va) || (device && rules.drop_device) {
            continue;
        }
        while let Some(extra) = got.next_if(|g| key(g) < key(&want)) {
            report.push(Mismatch::Unexpected {
                space: SpaceId(extra.space),
                va: VirtAddr(extra.va),
            });
        }
        let (space, va) = (SpaceId(want.space), VirtAddr(want.va));
        let Some(have) = got.next_if(|g| key(g) == key(&want)) else {
            report.push(Mismatch::Missing { space, va });
            continue;
        };
        report.pages_checked += 1;
        if want.expect_log2 != 0 && have.size_log2 != want.expect_log2 {
            report.push(Mismatch::PageSize {
                space,
                va,
                expected: 1 << want.expect_log2,
                got: 1 << have.size_log2,
            });
        }
        let (expect, below) = if rules.cow && want.rw {
            ((want.access.read_only(), true), want.below.read_only())
        } else {
            ((want.access, want.cow), want.below)
        };
        if expect != (have.access, have.cow) {
            report.push(Mismatch::Access {
                space,
                va,
                expected: expect,
                got: (have.access, have.cow),
            });
        } else if let Some(level) = (1..=mode.levels()).find(|&l| below.get(l) != have.below.get(l))
        {
            report.push(Mismatch::PathAccess {
                space,
                va,
                level: Level(level),
                expected: below.get(level),
                got: have.below.get(level),
            });
        }
        if device {
            if have.pa != want.pa {
                report.push(Mismatch::DeviceMoved { space, va });
            }
            devices.push(want.pa);
            continue;
        }
        match pairs.last_mut() {
            Some(p) if p.src + p.len == want.pa && p.dst + p.len == have.pa => p.len += 4096,
            _ => pairs.push(Pair {
                src: want.pa,
                dst: have.pa,
                len: 4096,
                space: want.space,
                va: want.va,
            }),
        }
    }
    for extra in got {
        report.push(Mismatch::Unexpected {
            space: SpaceId(extra.space),
            va: VirtAddr(extra.va),
        });
    }

    devices.sort_unstable();
    devices.dedup();
    for pa in devices {
        if compacted.lend(PhysAddr(pa), 1).is_ok() {
            report.push(Mismatch::DeviceCovered { pa: PhysAddr(pa) });
        }
    }
    check_frames(&mut pairs, original, compacted, &mut report, &mut progress);
    check_sharing(
        mode,
        &rules,
        &before.aliases,
        &after.aliases,
        compacted,
        new_roots,
        &mut report,
    );
    report
}

/// Frame identity both ways, then the contents of each distinct pair.
fn check_frames<M: PhysMem + ?Sized, N: PhysMem + ?Sized>(
    pairs: &mut Vec<Pair>,
    original: &M,
    compacted: &N,
    report: &mut VerifyReport,
    progress: &mut impl FnMut(u64),
) {
    pairs.sort_unstable_by_key(|p| (p.src, p.dst, p.len));
    pairs.dedup_by_key(|p| (p.src, p.dst, p.len));
    conflicts(
        pairs,
        |p| (p.src, p.dst),
        report,
        |s| Mismatch::FrameSplit { src: PhysAddr(s) },
    );
    pairs.sort_unstable_by_key(|p| (p.dst, p.src));
    conflicts(
        pairs,
        |p| (p.dst, p.src),
        report,
        |d| Mismatch::FrameMerged { dst: PhysAddr(d) },
    );

    let mut frames = 0u64;
    // Runs ascend by destination; a frame inside an earlier run (a 4 KiB
    // page inside a large page) is compared once.
    let mut reach = 0u64;
    for p in pairs.iter() {
        let mut reported = false;
        let from = reach.saturating_sub(p.dst).min(p.len);
        reach = reach.max(p.dst + p.len);
        for off in (from..p.len).step_by(4096) {
            let same = match (
                original.lend(PhysAddr(p.src + off), 4096),
                compacted.lend(PhysAddr(p.dst + off), 4096),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if !same && !reported {
                reported = true;
                report.push(Mismatch::Contents {
                    space: SpaceId(p.space),
                    va: VirtAddr(p.va + off),
                });
            }
            frames += 1;
            if frames % 4096 == 0 {
                progress(frames);
            }
        }
    }
    report.frames_compared = frames;
}

/// Overlapping runs (ascending by `key(p).0`) must agree on the offset
/// between their two sides, `key(p).1 - key(p).0`.
fn conflicts(
    pairs: &[Pair],
    key: impl Fn(&Pair) -> (u64, u64),
    report: &mut VerifyReport,
    mismatch: impl Fn(u64) -> Mismatch,
) {
    // The run reaching furthest so far: any overlap shows against it.
    let mut reach: Option<(u64, u64, u64)> = None;
    for p in pairs {
        let (s, o) = key(p);
        if let Some((rs, ro, rend)) = reach {
            if s < rend && o.wrapping_sub(s) != ro.wrapping_sub(rs) {
                report.push(mismatch(s));
            }
            if s + p.len <= rend {
                continue;
            }
        }
        reach = Some((s, o, s + p.len));
    }
}

/// Sharing: see the module docs.
fn check_sharing<P: PagingMode, N: PhysMem + ?Sized>(
    mode: P,
    rules: &Rules,
    before: &[Alias],
    after: &[Alias],
    compacted: &N,
    new_roots: &[PhysAddr],
    report: &mut VerifyReport,
) {
    let relation = |a: &Alias| (a.space, a.va, a.level.0, a.owner, a.owner_va);
    let mut kept: Vec<_> = before
        .iter()
        .filter(|a| rules.stays_shared(a))
        .map(relation)
        .collect();
    kept.sort_unstable();
    for a in after {
        if kept.binary_search(&relation(a)).is_err() {
            report.push(Mismatch::Sharing {
                space: SpaceId(a.space),
                va: VirtAddr(a.va),
                level: a.level,
            });
        }
    }
    for b in before.iter().filter(|a| rules.stays_shared(a)) {
        report.aliases_checked += 1;
        let root = |s: u32| new_roots[s as usize];
        let owners = entry_at(mode, compacted, root(b.owner), b.owner_va, b.level);
        let ours = entry_at(mode, compacted, root(b.space), b.va, b.level);
        let ok = match (owners, ours) {
            (At::Table(t, _), At::Table(u, access)) => t == u && access == b.access,
            (At::Table(..), _) => false,
            // The owner kept nothing there: nor may we.
            (_, ours) => ours == At::Absent,
        };
        if !ok {
            report.push(Mismatch::Sharing {
                space: SpaceId(b.space),
                va: VirtAddr(b.va),
                level: b.level,
            });
        }
    }
}
