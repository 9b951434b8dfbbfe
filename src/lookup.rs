//! The one VA-directed descent: from a root down the entries mapping one
//! VA, a [`step`] per level, to the entry at a given level or the first
//! entry that is not a table. Alias resolution, translation, the
//! compactor's flag lookups and verify's translations all use it; the walk
//! scans tables with the same [`step`].

use crate::addr::{Level, PhysAddr};
use crate::error::FaultReason;
use crate::mem::PhysMem;
use crate::mode::{Access, Entry, PagingMode, step};

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
    let mut table = root;
    let mut level = mode.root_level();
    let mut access = Access::ALL;
    loop {
        let t = match mem.table(table, P::table_bytes(level)) {
            Ok(t) => t,
            Err(e) => {
                return Found::Fault {
                    level,
                    pa: table,
                    reason: e.into(),
                };
            }
        };
        let s = step(mode, t.load::<P>(P::index(va, level)), level, access);
        match s.entry {
            Entry::Table(next) if level > stop && level.0 > 1 => {
                table = next;
                access = s.access;
                level = Level(level.0 - 1);
            }
            entry => {
                return Found::Entry {
                    raw: s.raw,
                    entry,
                    level,
                    access: s.access,
                };
            }
        }
    }
}
