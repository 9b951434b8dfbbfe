//! The owner index: which (space, VA) first reached each table.
//!
//! Alias detection needs memory proportional to the number of tables
//! reached, and the walk itself allocates nothing, so the caller provides
//! the storage: [`OwnerIndex`] over a slice of [`OwnerSlot`]s (a fixed
//! array on the stack works), or [`GrowableOwners`] over a `Vec` with the
//! `alloc` feature. A full index is reported, never a silently missed
//! alias. [`NoOwners`] records nothing: every table is descended as the
//! hardware would, which only the follow consumer may use.

use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};

/// The answer to [`Owners::claim`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Claim {
    /// Nobody owned the table: now the claimant does.
    New,
    /// Already owned by this space at this VA.
    Owned {
        /// The owner space.
        space: SpaceId,
        /// The owner's VA (first VA of the owner's entry region).
        va: VirtAddr,
    },
    /// The index is full; the table was not recorded.
    Full,
}

/// Where a walk records table ownership.
pub trait Owners {
    /// Forgets every table; a walk calls this when it starts.
    fn clear(&mut self);

    /// Records that `space` reaches `table` (a table at `level`) through
    /// its entry mapping `va`, unless the table is owned already.
    fn claim(&mut self, table: PhysAddr, level: Level, space: SpaceId, va: VirtAddr) -> Claim;
}

/// Marker: an [`Owners`] that really records ownership, so a walk using it
/// reports aliases (required for the references consumer).
pub trait DetectsAliases: Owners {}

impl<O: Owners + ?Sized> Owners for &mut O {
    #[inline]
    fn clear(&mut self) {
        (**self).clear();
    }
    #[inline]
    fn claim(&mut self, table: PhysAddr, level: Level, space: SpaceId, va: VirtAddr) -> Claim {
        (**self).claim(table, level, space, va)
    }
}

impl<O: DetectsAliases + ?Sized> DetectsAliases for &mut O {}

/// No index: every table is new, so nothing is ever an alias and every
/// space is walked as the hardware sees it.
///
/// Following an alias in the same memory reaches exactly the table the
/// alias names, so a follow walk without an index reports the same leaves
/// as one with an index; the references consumer needs real ownership and
/// does not accept `NoOwners`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOwners;

impl Owners for NoOwners {
    #[inline]
    fn clear(&mut self) {}
    #[inline]
    fn claim(&mut self, _: PhysAddr, _: Level, _: SpaceId, _: VirtAddr) -> Claim {
        Claim::New
    }
}

/// One slot of an [`OwnerIndex`]'s storage.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct OwnerSlot {
    /// Table PA | level; 0 for an empty slot (levels start at 1).
    key: u64,
    va: u64,
    space: u32,
}

impl OwnerSlot {
    /// An empty slot, for initialising storage: `[OwnerSlot::EMPTY; 512]`.
    pub const EMPTY: OwnerSlot = OwnerSlot {
        key: 0,
        va: 0,
        space: 0,
    };
}

#[inline]
fn key(table: PhysAddr, level: Level) -> u64 {
    // Tables are page aligned, so the low 12 bits are free for the level.
    (table.0 & !0xFFF) | u64::from(level.0)
}

/// An open-addressing hash index over caller-provided slots.
///
/// It holds up to [`capacity`](Self::capacity) tables (7/8 of the slots, to
/// keep probes short); a claim beyond that returns [`Claim::Full`].
///
/// # Examples
///
/// ```
/// use ptwalk::{Claim, Level, OwnerIndex, OwnerSlot, Owners, PhysAddr, SpaceId, VirtAddr};
///
/// let mut slots = [OwnerSlot::EMPTY; 16];
/// let mut index = OwnerIndex::new(&mut slots[..]);
/// let pt = PhysAddr(0x3000);
/// assert_eq!(index.claim(pt, Level(1), SpaceId(0), VirtAddr(0xC000_0000)), Claim::New);
/// assert_eq!(
///     index.claim(pt, Level(1), SpaceId(1), VirtAddr(0xC000_0000)),
///     Claim::Owned { space: SpaceId(0), va: VirtAddr(0xC000_0000) }
/// );
/// // The same page as a different level is a different table.
/// assert_eq!(index.claim(pt, Level(2), SpaceId(1), VirtAddr(0)), Claim::New);
/// ```
#[derive(Debug)]
pub struct OwnerIndex<S> {
    slots: S,
    len: usize,
}

impl<S: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>> OwnerIndex<S> {
    /// An empty index over `slots` (which it clears).
    pub fn new(mut slots: S) -> Self {
        // Reading is cheaper than writing: fresh storage is usually empty.
        if slots.as_ref().iter().any(|s| s.key != 0) {
            slots.as_mut().fill(OwnerSlot::EMPTY);
        }
        OwnerIndex { slots, len: 0 }
    }

    /// How many tables fit.
    #[must_use]
    pub fn capacity(&self) -> usize {
        let n = self.slots.as_ref().len();
        n - n / 8
    }

    /// How many tables are recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no table is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The owner of (`table`, `level`), if recorded.
    #[must_use]
    pub fn owner(&self, table: PhysAddr, level: Level) -> Option<(SpaceId, VirtAddr)> {
        let slots = self.slots.as_ref();
        match self.find(key(table, level)) {
            Ok(i) => Some((SpaceId(slots[i].space), VirtAddr(slots[i].va))),
            Err(_) => None,
        }
    }

    /// Every recorded table: (table, level, owner space, owner VA).
    pub fn iter(&self) -> impl Iterator<Item = (PhysAddr, Level, SpaceId, VirtAddr)> + '_ {
        self.slots.as_ref().iter().filter(|s| s.key != 0).map(|s| {
            (
                PhysAddr(s.key & !0xFFF),
                Level((s.key & 0xFFF) as u8),
                SpaceId(s.space),
                VirtAddr(s.va),
            )
        })
    }

    /// Gives the storage back.
    pub fn into_inner(self) -> S {
        self.slots
    }

    /// `Ok(slot)` holding `k`, or `Err(Some(empty slot))` where it would go,
    /// or `Err(None)` when there are no slots.
    #[inline]
    fn find(&self, k: u64) -> Result<usize, Option<usize>> {
        let slots = self.slots.as_ref();
        let n = slots.len();
        if n == 0 {
            return Err(None);
        }
        let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Map the hash onto 0..n without a division.
        let mut i = ((u128::from(h) * n as u128) >> 64) as usize;
        for _ in 0..n {
            let s = &slots[i];
            if s.key == k {
                return Ok(i);
            }
            if s.key == 0 {
                return Err(Some(i));
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Err(None)
    }
}

impl<S: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>> Owners for OwnerIndex<S> {
    fn clear(&mut self) {
        // Only `claim` fills slots, and it counts them: `len == 0` means
        // every slot is empty already.
        if self.len != 0 {
            self.slots.as_mut().fill(OwnerSlot::EMPTY);
            self.len = 0;
        }
    }

    #[inline]
    fn claim(&mut self, table: PhysAddr, level: Level, space: SpaceId, va: VirtAddr) -> Claim {
        let k = key(table, level);
        match self.find(k) {
            Ok(i) => {
                let s = self.slots.as_ref()[i];
                Claim::Owned {
                    space: SpaceId(s.space),
                    va: VirtAddr(s.va),
                }
            }
            Err(Some(i)) if self.len < self.capacity() => {
                self.slots.as_mut()[i] = OwnerSlot {
                    key: k,
                    va: va.0,
                    space: space.0,
                };
                self.len += 1;
                Claim::New
            }
            Err(_) => Claim::Full,
        }
    }
}

impl<S: AsRef<[OwnerSlot]> + AsMut<[OwnerSlot]>> DetectsAliases for OwnerIndex<S> {}

/// An owner index on the heap that grows as needed: never full.
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct GrowableOwners {
    index: Option<OwnerIndex<alloc::vec::Vec<OwnerSlot>>>,
}

#[cfg(feature = "alloc")]
impl GrowableOwners {
    /// An empty index (allocates on the first claim).
    #[must_use]
    pub const fn new() -> Self {
        GrowableOwners { index: None }
    }

    /// An empty index with room for `tables` tables before it grows.
    #[must_use]
    pub fn with_capacity(tables: usize) -> Self {
        let slots = (tables + tables / 7 + 1).next_power_of_two();
        GrowableOwners {
            index: Some(OwnerIndex::new(alloc::vec![OwnerSlot::EMPTY; slots])),
        }
    }

    /// Every recorded table: (table, level, owner space, owner VA).
    pub fn iter(&self) -> impl Iterator<Item = (PhysAddr, Level, SpaceId, VirtAddr)> + '_ {
        self.index.iter().flat_map(OwnerIndex::iter)
    }

    fn grow(&mut self) {
        let old = self.index.take();
        let slots = old
            .as_ref()
            .map_or(64, |i| (i.slots.len() * 2).next_power_of_two());
        let mut new = OwnerIndex::new(alloc::vec![OwnerSlot::EMPTY; slots]);
        if let Some(old) = old {
            for s in old.slots.iter().filter(|s| s.key != 0) {
                let Err(Some(i)) = new.find(s.key) else {
                    unreachable!("a fresh index twice the size has room for every key")
                };
                new.slots[i] = *s;
                new.len += 1;
            }
        }
        self.index = Some(new);
    }
}

#[cfg(feature = "alloc")]
impl Owners for GrowableOwners {
    fn clear(&mut self) {
        if let Some(i) = &mut self.index {
            i.clear();
        }
    }

    fn claim(&mut self, table: PhysAddr, level: Level, space: SpaceId, va: VirtAddr) -> Claim {
        loop {
            if let Some(index) = &mut self.index {
                match index.claim(table, level, space, va) {
                    Claim::Full => {}
                    c => return c,
                }
            }
            self.grow();
        }
    }
}

#[cfg(feature = "alloc")]
impl DetectsAliases for GrowableOwners {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_index_refuses_new_tables_but_still_answers_owned() {
        let mut slots = [OwnerSlot::EMPTY; 8];
        let mut idx = OwnerIndex::new(&mut slots[..]);
        assert_eq!(idx.capacity(), 7);
        for t in 0..7u64 {
            assert_eq!(
                idx.claim(PhysAddr(t << 12), Level(1), SpaceId(0), VirtAddr(t)),
                Claim::New
            );
        }
        assert_eq!(
            idx.claim(PhysAddr(99 << 12), Level(1), SpaceId(0), VirtAddr(0)),
            Claim::Full
        );
        assert_eq!(
            idx.claim(PhysAddr(3 << 12), Level(1), SpaceId(2), VirtAddr(0)),
            Claim::Owned {
                space: SpaceId(0),
                va: VirtAddr(3)
            }
        );
        idx.clear();
        assert!(idx.is_empty());
        assert_eq!(
            idx.claim(PhysAddr(99 << 12), Level(1), SpaceId(0), VirtAddr(0)),
            Claim::New
        );
    }

    #[test]
    fn empty_storage_is_always_full() {
        let mut idx = OwnerIndex::new([OwnerSlot::EMPTY; 0]);
        assert_eq!(
            idx.claim(PhysAddr(0), Level(1), SpaceId(0), VirtAddr(0)),
            Claim::Full
        );
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn growable_keeps_owners_across_growth() {
        let mut g = GrowableOwners::new();
        for t in 0..1000u64 {
            assert_eq!(
                g.claim(PhysAddr(t << 12), Level(1), SpaceId(t as u32), VirtAddr(t)),
                Claim::New
            );
        }
        for t in 0..1000u64 {
            assert_eq!(
                g.claim(PhysAddr(t << 12), Level(1), SpaceId(9), VirtAddr(0)),
                Claim::Owned {
                    space: SpaceId(t as u32),
                    va: VirtAddr(t)
                }
            );
        }
    }
}
