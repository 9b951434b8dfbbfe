//! The one VA-directed descent: from a root down the entries mapping one
//! VA, a [`step`] per level, to the entry at a given level or the first
//! entry that is not a table. Alias resolution, translation, the
//! compactor's flag lookups and verify's translations all use it; the walk
//! scans tables with the same [`step`].

use crate::addr::{Level, PhysAddr};
use crate::error::FaultReason;
use crate::error::MemError;
use crate::mem::{PhysMem, Table};
use crate::mode::{Access, Entry, PRESENT, PagingMode, step};

/// Where a [`lookup`] stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Found {
    /// The entry at the level asked for, or the first entry above it that
    /// is not a present table entry (absent, a page, reserved).
    Entry {
        /// The raw entry.
        raw: u64,
        /// What it means.
        entry: Entry,
        /// Level of the table holding it.
        level: Level,
        /// Access of the path down to and including it.
        access: Access,
    },
    /// A table on the way could not be read.
    Fault {
        /// Its level.
        level: Level,
        /// Its address.
        pa: PhysAddr,
        /// Why.
        reason: FaultReason,
    },
}

/// Descends from the root table `root` (a table address, not a CR3 value)
/// along `va` (canonical or linear: only index bits are read) to the entry
/// at `stop` (clamped to `1..=levels`), in `mem`.
#[inline]
pub(crate) fn lookup<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    root: PhysAddr,
    va: u64,
    stop: Level,
) -> Found {
    let first = mem.table(root, P::table_bytes(mode.root_level()));
    lookup_from(mode, mem, (root, first), va, stop)
}

/// [`lookup`] with the root table already fetched (or not): a caller
/// translating many VAs in one space fetches it before anything that
/// depends on the VA, so that the compiler can hoist it out of the
/// caller's loop (measured on the v2p benchmark: 28.8 instructions per
/// translation when fetched inside, 17.8 when fetched first).
#[inline(always)]
pub(crate) fn lookup_from<'m, P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &'m M,
    (root, first): (PhysAddr, Result<Table<'m>, MemError>),
    va: u64,
    stop: Level,
) -> Found {
    // The root level as a constant, so that the descent unrolls and each
    // level's decode folds to that level's rules.
    match mode.levels() {
        2 => descend::<P, M, 2>(mode, mem, (root, first), va, stop),
        3 => descend::<P, M, 3>(mode, mem, (root, first), va, stop),
        4 => descend::<P, M, 4>(mode, mem, (root, first), va, stop),
        _ => descend::<P, M, 5>(mode, mem, (root, first), va, stop),
    }
}

/// A table of the descent: its address, the table itself (or why it could
/// not be read), and the access of the path down to the entry naming it.
type Here<'m> = (PhysAddr, Result<Table<'m>, MemError>, Access);

/// [`lookup_from`] with the root at level `TOP`: one [`down`] per level,
/// written out (not a loop), so that each level's decode folds to that
/// level's rules and the compiler need not unroll anything.
#[inline(always)]
fn descend<'m, P: PagingMode, M: PhysMem + ?Sized, const TOP: u8>(
    mode: P,
    mem: &'m M,
    (root, first): (PhysAddr, Result<Table<'m>, MemError>),
    va: u64,
    stop: Level,
) -> Found {
    let mut here: Here<'m> = (root, first, Access::ALL);
    for level in [5, 4, 3, 2] {
        if TOP >= level {
            here = match down(mode, mem, here, va, Level(level), stop) {
                Ok(next) => next,
                Err(found) => return found,
            };
        }
    }
    match down(mode, mem, here, va, Level::PT, stop) {
        Ok(_) => unreachable!("a page-table entry is never a table"),
        Err(found) => found,
    }
}

/// One level of a descent: the entry for `va` in the table `here` (at
/// `level`), and the next table if it names one and `level` is above
/// `stop`; otherwise where the descent stopped.
#[inline(always)]
fn down<'m, P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &'m M,
    (table, t, access): Here<'m>,
    va: u64,
    level: Level,
    stop: Level,
) -> Result<Here<'m>, Found> {
    let t = match t {
        Ok(t) => t,
        Err(e) => {
            return Err(Found::Fault {
                level,
                pa: table,
                reason: e.into(),
            });
        }
    };
    let raw = t.load::<P>(P::index(va, level));
    if P::ENTRY_BYTES == 4 && raw & PRESENT == 0 {
        // Absent (what `step` says), tested first for 4-byte entries only:
        // i686's v2p probes mostly stop at an absent directory entry
        // (external 21.6 -> 17.3-17.6 instructions per translation), while
        // tested first for 8-byte ones it cost x86-64's 49.0 -> 51.2.
        return Err(Found::Entry {
            raw,
            entry: Entry::Absent,
            level,
            access: access & mode.access(raw, level),
        });
    }
    if level > stop && level.0 > 1 {
        if let Some(next) = mode.table_at(raw, level) {
            let child = Level(level.0 - 1);
            let access = access & mode.access(raw, level);
            return Ok((next, mem.table(next, P::table_bytes(child)), access));
        }
    }
    if level.0 == 1 && raw & (mode.pte_reserved_bits() | PRESENT) == PRESENT {
        // A 4 KiB page: what `step` says, with one mask and compare.
        return Err(Found::Entry {
            raw,
            entry: Entry::Page(P::pte_frame(raw)),
            level,
            access: access & mode.access(raw, level),
        });
    }
    // Anything else stops here: above `stop`, `table_at` said the entry
    // names no table, which is what `decode` says (a test checks it), so
    // the descent has one way down per level.
    let s = step(mode, raw, level, access);
    Err(Found::Entry {
        raw: s.raw,
        entry: s.entry,
        level,
        access: s.access,
    })
}
