//! Alias resolution: the one place alias semantics live.
//!
//! An [`Aliasing`] event says "my entry means whatever the owner's entry at
//! (owner space, level, owner VA) means". [`resolve`] looks that entry up
//! in the memory the consumer is working with (the walked memory for the
//! follow consumer, the rebuilt tables for a snapshot rebuild): a present
//! table entry gives the table our entry means; anything else means our
//! entry is invalid too.

use crate::addr::{Level, PhysAddr, VirtAddr};
use crate::error::FaultReason;
use crate::event::Aliasing;
use crate::mem::PhysMem;
use crate::mode::{Entry, PagingMode};

/// What an alias means in a given memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Resolution {
    /// The owner's entry is a present table entry: this table (at
    /// `level - 1`) is what the aliasing entry means.
    Table(PhysAddr),
    /// The owner has no valid table entry there (not present, a large
    /// page, or an absent table on the way down): the aliasing entry is
    /// invalid too.
    Invalid,
    /// A table on the way down to the owner's entry could not be read.
    Fault {
        /// Level of the unreadable table.
        level: Level,
        /// Its physical address.
        pa: PhysAddr,
        /// Why.
        reason: FaultReason,
    },
}

/// Resolves the entry at `level` that maps `va` in the space rooted at
/// `root`: walks down from the root in `mem` and reports the table that
/// entry points at.
///
/// `level` is the level of the table holding the entry (an
/// [`Aliasing`]'s `level`); levels outside `2..=LEVELS` hold no table
/// entries and resolve to [`Resolution::Invalid`].
///
/// # Examples
///
/// ```
/// use ptwalk::{resolve, I686, Level, PhysAddr, Resolution, VirtAddr};
///
/// let mut mem = vec![0u8; 0x3000];
/// // Root at 0x1000; its entry for 0xC000_0000 points at a table at 0x2000.
/// mem[0x1000 + 0x300 * 4..][..4].copy_from_slice(&0x2027u32.to_le_bytes());
/// let r = resolve(I686::default(), &mem[..], PhysAddr(0x1000), VirtAddr(0xC000_0000), Level(2));
/// assert_eq!(r, Resolution::Table(PhysAddr(0x2000)));
/// // After the owner unmaps it, an alias to it means "nothing here".
/// mem[0x1000 + 0x300 * 4] = 0;
/// let r = resolve(I686::default(), &mem[..], PhysAddr(0x1000), VirtAddr(0xC000_0000), Level(2));
/// assert_eq!(r, Resolution::Invalid);
/// ```
pub fn resolve<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    root: PhysAddr,
    va: VirtAddr,
    level: Level,
) -> Resolution {
    match entry_at(mode, mem, root, va, level) {
        Lookup::Entry(raw) => match mode.decode(raw, level) {
            Entry::Table(t) => Resolution::Table(t),
            Entry::Absent | Entry::Page(_) | Entry::Reserved(_) => Resolution::Invalid,
        },
        Lookup::Absent => Resolution::Invalid,
        Lookup::Fault { level, pa, reason } => Resolution::Fault { level, pa, reason },
    }
}

/// What [`entry_at`] found.
pub(crate) enum Lookup {
    /// The raw entry at the level asked for.
    Entry(u64),
    /// A table on the way down is absent (or a large page is in the way),
    /// or the level holds no table entries.
    Absent,
    /// A table on the way down could not be read.
    Fault {
        level: Level,
        pa: PhysAddr,
        reason: FaultReason,
    },
}

/// The raw entry at `level` (a level holding table entries, `2..=LEVELS`)
/// for `va` under `root`: the descent both [`resolve`] and the compactor's
/// flag lookups share.
pub(crate) fn entry_at<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    root: PhysAddr,
    va: VirtAddr,
    level: Level,
) -> Lookup {
    if level.0 < 2 || level.0 > P::LEVELS {
        return Lookup::Absent;
    }
    let mut table = P::root_table(root);
    let mut l = P::root_level();
    loop {
        let bytes = match mem.table(table, P::table_bytes(l)) {
            Ok(b) => b,
            Err(e) => {
                return Lookup::Fault {
                    level: l,
                    pa: table,
                    reason: e.into(),
                };
            }
        };
        let raw = bytes.load::<P>(P::index(va.0, l));
        if l == level {
            return Lookup::Entry(raw);
        }
        match mode.decode(raw, l) {
            Entry::Table(next) => table = next,
            Entry::Absent | Entry::Page(_) | Entry::Reserved(_) => return Lookup::Absent,
        }
        l = Level(l.0 - 1);
    }
}

/// Resolves an [`Aliasing`] event: [`resolve`] at the owner's root (found
/// in `roots`, the roots of the walk that produced the event), the owner's
/// VA and the alias's level.
///
/// An owner index outside `roots` resolves to [`Resolution::Invalid`].
pub fn resolve_alias<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    roots: &[PhysAddr],
    alias: &Aliasing,
) -> Resolution {
    match roots.get(alias.owner.index()) {
        Some(&root) => resolve(mode, mem, root, alias.owner_va, alias.level),
        None => Resolution::Invalid,
    }
}
