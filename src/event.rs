//! What a walk reports: [`WalkEvent`] and its four kinds of record.

use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::error::FaultReason;
use crate::mode::{Access, COW_BIT};

/// One event of a walk, in walk order (roots in the given order, then
/// ascending VA within a space, depth first).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum WalkEvent {
    /// A mapped page.
    Leaf(Leaf),
    /// A directory entry reaching a table that an earlier (space, VA)
    /// owns: a reference to where the real mapping lives.
    Aliasing(Aliasing),
    /// An alias whose target has no valid entry: nothing is mapped in this
    /// region (emitted only when following aliases).
    Invalid(Invalid),
    /// A table the walk had to read but could not.
    Fault(Fault),
}

/// A mapped page, reported whole even when it only intersects the range.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Leaf {
    /// The space whose VA this is.
    pub space: SpaceId,
    /// First VA of the page.
    pub va: VirtAddr,
    /// First PA of the page's frame (never read by the walk: it may lie
    /// outside memory, e.g. device memory).
    pub pa: PhysAddr,
    /// The raw entry that maps the page (the PTE, or the directory entry
    /// of a large page), all bits kept.
    pub entry: u64,
    /// Level of the table holding `entry` (1 for a 4 KiB page).
    pub level: Level,
    /// log2 of the page size (12 for 4 KiB, 22 for 4 MiB).
    pub size_log2: u8,
    /// Effective access along the path from the root to this entry.
    pub access: Access,
}

impl Leaf {
    /// Page size in bytes.
    #[must_use]
    pub const fn size(&self) -> u64 {
        1 << self.size_log2
    }

    /// Whether the entry is marked copy-on-write ([`COW_BIT`]).
    #[must_use]
    pub const fn is_cow(&self) -> bool {
        self.entry & COW_BIT != 0
    }

    /// The physical address `va` translates to, if `va` lies in this page.
    #[must_use]
    pub const fn translate(&self, va: VirtAddr) -> Option<PhysAddr> {
        let off = va.0.wrapping_sub(self.va.0);
        if off < self.size() {
            Some(PhysAddr(self.pa.0 + off))
        } else {
            None
        }
    }
}

/// A directory entry of `space` that reaches a table already owned by
/// `owner` (possibly `space` itself, at another VA).
///
/// It means "my entry at (`space`, `level`, `va`) means whatever the
/// owner's entry at (`owner`, `level`, `owner_va`) means": resolve it with
/// [`resolve`](crate::resolve) in the memory you are working with.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Aliasing {
    /// The space holding the aliasing entry.
    pub space: SpaceId,
    /// First VA of the region our entry maps.
    pub va: VirtAddr,
    /// The space owning the table.
    pub owner: SpaceId,
    /// First VA of the region the owner's entry maps.
    pub owner_va: VirtAddr,
    /// The aliased table (at `level - 1`).
    pub table: PhysAddr,
    /// Our own raw entry (its flags are ours, not the owner's).
    pub entry: u64,
    /// Level of the table holding the entries (ours and the owner's).
    pub level: Level,
    /// log2 of the region size one such entry maps.
    pub size_log2: u8,
}

impl Aliasing {
    /// Bytes of VA the entry maps.
    #[must_use]
    pub const fn len(&self) -> u64 {
        1 << self.size_log2
    }

    /// Always false: a region is never empty (for clippy's `len` rule).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// A region with no valid mapping because the alias reaching it resolved
/// to nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Invalid {
    /// The space.
    pub space: SpaceId,
    /// First VA of the region.
    pub va: VirtAddr,
    /// Level of the table holding the entry that is invalid.
    pub level: Level,
    /// log2 of the region size.
    pub size_log2: u8,
}

impl Invalid {
    /// Bytes of VA in the region.
    #[must_use]
    pub const fn len(&self) -> u64 {
        1 << self.size_log2
    }

    /// Always false: a region is never empty (for clippy's `len` rule).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// A table the walk needed but could not read (or could not record in the
/// owner index). The walk goes on with the next entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Fault {
    /// The space.
    pub space: SpaceId,
    /// First VA of the region mapped through the table.
    pub va: VirtAddr,
    /// Level of the table that could not be read (for
    /// [`FaultReason::Reserved`]: of the table holding the entry).
    pub level: Level,
    /// Physical address of that table (for [`FaultReason::Reserved`]: the
    /// address the entry names).
    pub pa: PhysAddr,
    /// Why.
    pub reason: FaultReason,
}

impl WalkEvent {
    /// The space the event belongs to.
    #[must_use]
    pub const fn space(&self) -> SpaceId {
        match self {
            WalkEvent::Leaf(l) => l.space,
            WalkEvent::Aliasing(a) => a.space,
            WalkEvent::Invalid(i) => i.space,
            WalkEvent::Fault(f) => f.space,
        }
    }

    /// First VA the event describes.
    #[must_use]
    pub const fn va(&self) -> VirtAddr {
        match self {
            WalkEvent::Leaf(l) => l.va,
            WalkEvent::Aliasing(a) => a.va,
            WalkEvent::Invalid(i) => i.va,
            WalkEvent::Fault(f) => f.va,
        }
    }

    /// The leaf, if this is one.
    #[must_use]
    pub const fn leaf(&self) -> Option<&Leaf> {
        match self {
            WalkEvent::Leaf(l) => Some(l),
            _ => None,
        }
    }
}
