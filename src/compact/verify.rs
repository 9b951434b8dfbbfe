//! Verification of a compacted snapshot against its original: every kept
//! VA maps a page with identical contents and the expected access, every
//! dropped VA is unmapped, and the sharing structure is the same.

use alloc::vec::Vec;
use core::fmt;

use super::{Policy, source_entry};
use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::event::{Aliasing, Leaf, WalkEvent};
use crate::mem::PhysMem;
use crate::mode::{Access, Entry, PagingMode};
use crate::owners::GrowableOwners;
use crate::resolve::{Resolution, resolve};
use crate::walk::{Roots, Walk};

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
    /// The page's contents differ (or a device page moved).
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
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
                if got.1 { ",cow" } else { "" },
                expected.0,
                if expected.1 { ",cow" } else { "" }
            ),
            Mismatch::Roots {
                original,
                compacted,
            } => write!(
                f,
                "{compacted} compacted roots for {original} original roots"
            ),
            Mismatch::Sharing { space, va, level } => {
                write!(
                    f,
                    "{space}: the level-{level} entry at {va} is not shared as before"
                )
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// 4 KiB pages compared.
    pub pages_checked: u64,
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

/// One 4 KiB page of a follow walk, as verification compares it.
#[derive(Clone, Copy)]
struct Page {
    va: u64,
    pa: u64,
    access: Access,
    cow: bool,
    /// The leaf entry's own RW bit (what the copy-on-write policy reads).
    rw: bool,
    /// Whether the frame (as the compactor judged it) is outside memory.
    device: bool,
}

/// The 4 KiB pages of `space`'s follow walk in `mem`, ascending.
fn pages<'m, P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &'m M,
    root: PhysAddr,
    policy: Option<&'m Policy>,
) -> impl Iterator<Item = Page> + 'm {
    Walk::from_roots(mem, Roots::One(root))
        .with_mode(mode)
        .filter_map(|e| e.leaf().copied())
        .flat_map(move |l: Leaf| {
            let size = l.size();
            // Mirror the compactor: a large page kept whole is device memory
            // if any of it lies outside memory; a split one page by page.
            let split = policy.is_some_and(|p| p.splits(l.va.0, size));
            let whole_device = mem.lend(l.pa, size as usize).is_err();
            (0..size).step_by(4096).map(move |off| Page {
                va: l.va.0 + off,
                pa: l.pa.0 + off,
                access: l.access,
                cow: l.is_cow(),
                rw: l.entry & 2 != 0,
                device: if split {
                    mem.lend(PhysAddr(l.pa.0 + off), 4096).is_err()
                } else {
                    whole_device
                },
            })
        })
}

/// Compares a compacted snapshot with the original it was made from under
/// `policy` (page contents read from `original`); see the module docs.
pub fn verify<P: PagingMode, M: PhysMem + ?Sized, N: PhysMem + ?Sized>(
    mode: P,
    original: &M,
    roots: &[PhysAddr],
    compacted: &N,
    new_roots: &[PhysAddr],
    policy: &Policy,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    if roots.len() != new_roots.len() {
        report.push(Mismatch::Roots {
            original: roots.len(),
            compacted: new_roots.len(),
        });
        return report;
    }
    let before = aliases(mode, original, roots);
    for (s, (&root, &new_root)) in roots.iter().zip(new_roots).enumerate() {
        let space = SpaceId(s as u32);
        // Shared regions at another VA than their owner's show what the
        // owner kept: a page the policy drops at the owner's VA is gone here.
        let rebased: Vec<&Aliasing> = before
            .iter()
            .filter(|a| a.space == space && a.va != a.owner_va && policy.shares(a))
            .collect();
        let dropped_at_owner = |va: u64| {
            rebased.iter().any(|a| {
                let off = va.wrapping_sub(a.va.0);
                off < a.len() && policy.skips_all(a.owner_va.0 + off, 4096)
            })
        };
        let dropped = |p: &Page| {
            policy.skips_all(p.va, 4096)
                || (p.device && policy.drop_device_pages)
                || dropped_at_owner(p.va)
        };
        let expected = pages(mode, original, root, Some(policy)).filter(|p| !dropped(p));
        let mut got = pages(mode, compacted, new_root, None).peekable();
        for want in expected {
            // Anything mapped below the expected page is unexpected.
            while let Some(extra) = got.next_if(|g| g.va < want.va) {
                report.push(Mismatch::Unexpected {
                    space,
                    va: VirtAddr(extra.va),
                });
            }
            let Some(have) = got.next_if(|g| g.va == want.va) else {
                report.push(Mismatch::Missing {
                    space,
                    va: VirtAddr(want.va),
                });
                continue;
            };
            report.pages_checked += 1;
            let va = VirtAddr(want.va);
            let same = if want.device {
                want.pa == have.pa
            } else {
                match (
                    original.lend(PhysAddr(want.pa), 4096),
                    compacted.lend(PhysAddr(have.pa), 4096),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            };
            if !same {
                report.push(Mismatch::Contents { space, va });
            }
            let cowed = policy.cow && want.rw;
            let expect = if cowed {
                (
                    Access::from_bits(want.access.bits() & !Access::WRITABLE.bits()),
                    true,
                )
            } else {
                (want.access, want.cow)
            };
            if expect != (have.access, have.cow) {
                report.push(Mismatch::Access {
                    space,
                    va,
                    expected: expect,
                    got: (have.access, have.cow),
                });
            }
        }
        for extra in got {
            report.push(Mismatch::Unexpected {
                space,
                va: VirtAddr(extra.va),
            });
        }
    }
    check_sharing(mode, &before, compacted, new_roots, policy, &mut report);
    report
}

fn aliases<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    roots: &[PhysAddr],
) -> Vec<Aliasing> {
    Walk::from_roots(mem, Roots::Many(roots))
        .with_mode(mode)
        .with_owners(GrowableOwners::new())
        .references()
        .filter_map(|e| match e {
            WalkEvent::Aliasing(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn same_relation(a: &Aliasing, b: &Aliasing) -> bool {
    (a.space, a.va, a.level, a.owner, a.owner_va) == (b.space, b.va, b.level, b.owner, b.owner_va)
}

/// Sharing: every alias of the compacted snapshot is one of the original's,
/// and every original alias that can stay shared is shared when the owner
/// still has a table there, and invalid when it has not.
fn check_sharing<P: PagingMode, N: PhysMem + ?Sized>(
    mode: P,
    before: &[Aliasing],
    compacted: &N,
    new_roots: &[PhysAddr],
    policy: &Policy,
    report: &mut VerifyReport,
) {
    let after = aliases(mode, compacted, new_roots);
    for a in &after {
        if !before.iter().any(|b| same_relation(a, b)) {
            report.push(Mismatch::Sharing {
                space: a.space,
                va: a.va,
                level: a.level,
            });
        }
    }
    for b in before.iter().filter(|b| policy.shares(b)) {
        report.aliases_checked += 1;
        let owner_has_table = matches!(
            resolve(
                mode,
                compacted,
                new_roots[b.owner.index()],
                b.owner_va,
                b.level
            ),
            Resolution::Table(_)
        );
        let ok = if owner_has_table {
            after.iter().any(|a| same_relation(a, b))
        } else {
            let ours = source_entry(mode, compacted, new_roots[b.space.index()], b.va, b.level);
            ours.is_none_or(|raw| mode.decode(raw, b.level) == Entry::Absent)
        };
        if !ok {
            report.push(Mismatch::Sharing {
                space: b.space,
                va: b.va,
                level: b.level,
            });
        }
    }
}
