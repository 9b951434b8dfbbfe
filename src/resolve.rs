//! Alias resolution: the one place alias semantics live.
//!
//! An [`Aliasing`] event says "my entry means whatever the owner's entry at
//! (owner space, level, owner VA) means". [`resolve`] looks that entry up
//! in the memory the consumer is working with (the walked memory for the
//! follow consumer, the rebuilt tables for a snapshot rebuild): a present
//! table entry gives the table our entry means; anything else means our
//! entry is invalid too. (The follow consumer skips the lookup in frozen
//! walked memory, where it would name the table our own entry names:
//! `PhysMem::frozen`.)

use crate::addr::{Level, PhysAddr, VirtAddr};
use crate::error::FaultReason;
use crate::event::Aliasing;
use crate::lookup::{Found, lookup};
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
/// `root` (as CR3 holds it): walks down from the root in `mem` and reports
/// the table that entry points at.
///
/// `level` is the level of the table holding the entry (an
/// [`Aliasing`]'s `level`); levels outside `2..=levels` hold no table
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
    if level.0 < 2 || level.0 > mode.levels() {
        return Resolution::Invalid;
    }
    match lookup(mode, mem, mode.root_table(root), va.0, level) {
        Found::Entry {
            entry: Entry::Table(t),
            level: found,
            ..
        } if found == level => Resolution::Table(t),
        Found::Entry { .. } => Resolution::Invalid,
        Found::Fault { level, pa, reason } => Resolution::Fault { level, pa, reason },
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
