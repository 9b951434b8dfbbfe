//! The upstream shapes as thin functions over [`Walk`], and [`Spaces`]:
//! a set of address spaces for single-address translation.

use crate::adapt::{Leaves, WalkExt};
use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::error::{FaultReason, MemError, WalkError};
use crate::event::{Fault, Leaf};
use crate::lookup::{Found, lookup_from};
use crate::mem::{PhysMem, Table};
use crate::mode::{Entry, I686, PagingMode};
use crate::owners::NoOwners;
use crate::walk::{FollowAliases, Roots, Walk};

/// Every mapping of the i686 space rooted at `root` intersecting
/// `[address, address + len)`, aliases followed: the upstream
/// `virt_to_phys` shape, as the follow consumer of the shared walk.
///
/// # Examples
///
/// ```
/// use ptwalk::{virt_to_phys, PhysAddr};
///
/// let mut mem = vec![0u8; 0x3000];
/// mem[0x1000 + 0x300 * 4..][..4].copy_from_slice(&0x2003u32.to_le_bytes());
/// mem[0x2000 + 5 * 4..][..4].copy_from_slice(&0x0077_7003u32.to_le_bytes());
/// let m: Vec<_> = virt_to_phys(&mem[..], PhysAddr(0x1000), 0xC000_5123, 1).collect();
/// assert_eq!((m[0].va.0, m[0].pa.0, m[0].size()), (0xC000_5000, 0x77_7000, 0x1000));
/// ```
pub fn virt_to_phys<M: PhysMem + ?Sized>(
    mem: &M,
    root: PhysAddr,
    address: u64,
    len: u64,
) -> Leaves<FollowAliases<'_, I686, M, NoOwners>> {
    Walk::single(mem, root).range(address, len).leaves()
}

/// Every mapping of every i686 space in `roots` intersecting `[address,
/// address + len)`, shared tables reported once as
/// [`Aliasing`](crate::Aliasing) references: the upstream `walk_va_spaces`
/// shape, as the references consumer of the shared walk, with a heap owner
/// index.
///
/// # Errors
///
/// As [`Walk::new`].
#[cfg(feature = "alloc")]
pub fn walk_va_spaces<'a, M: PhysMem + ?Sized>(
    mem: &'a M,
    roots: &'a [PhysAddr],
    address: u64,
    len: u64,
) -> Result<crate::walk::References<'a, I686, M, crate::owners::GrowableOwners>, WalkError> {
    Ok(Walk::new(mem, roots)?
        .with_owners(crate::owners::GrowableOwners::new())
        .range(address, len)
        .references())
}

/// What one VA translates to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Translation {
    /// Mapped by this leaf (use [`Leaf::translate`] for the byte's PA).
    Mapped(Leaf),
    /// Not mapped.
    Unmapped,
    /// A table on the way could not be read.
    Fault(Fault),
}

/// A set of address spaces over one memory, for single-address lookups.
///
/// # Examples
///
/// ```
/// use ptwalk::{PhysAddr, SpaceId, Spaces, Translation, VirtAddr};
///
/// let mut mem = vec![0u8; 0x3000];
/// mem[0x1000 + 0x300 * 4..][..4].copy_from_slice(&0x2003u32.to_le_bytes());
/// mem[0x2000 + 5 * 4..][..4].copy_from_slice(&0x0077_7003u32.to_le_bytes());
/// let roots = [PhysAddr(0x1000)];
/// let spaces = Spaces::new(&mem[..], &roots)?;
/// let Translation::Mapped(leaf) = spaces.translate(SpaceId(0), VirtAddr(0xC000_5123))? else { panic!() };
/// assert_eq!(leaf.translate(VirtAddr(0xC000_5123)), Some(PhysAddr(0x77_7123)));
/// assert_eq!(spaces.translate(SpaceId(0), VirtAddr(0xC000_6000))?, Translation::Unmapped);
/// # Ok::<(), ptwalk::WalkError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Spaces<'a, M: ?Sized, P = I686> {
    mode: P,
    mem: &'a M,
    roots: &'a [PhysAddr],
}

impl<'a, M: PhysMem + ?Sized> Spaces<'a, M, I686> {
    /// The i686 spaces rooted at `roots` in `mem`.
    ///
    /// # Errors
    ///
    /// As [`Walk::new`].
    pub fn new(mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, WalkError> {
        Spaces::new_in(I686::default(), mem, roots)
    }
}

impl<'a, M: PhysMem + ?Sized, P: PagingMode> Spaces<'a, M, P> {
    /// The spaces rooted at `roots` (as CR3 holds them) in `mem`, in paging
    /// mode `mode`.
    ///
    /// # Errors
    ///
    /// As [`Walk::new_in`].
    pub fn new_in(mode: P, mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, WalkError> {
        Roots::Many(roots).check(mode)?;
        Ok(Spaces { mode, mem, roots })
    }
}

impl<'a, M: PhysMem + ?Sized, P: PagingMode> Spaces<'a, M, P> {
    /// The same spaces under another paging mode (roots as checked when
    /// built: see [`Spaces::new_in`]).
    pub fn with_mode<Q: PagingMode>(self, mode: Q) -> Spaces<'a, M, Q> {
        Spaces {
            mode,
            mem: self.mem,
            roots: self.roots,
        }
    }

    /// The roots.
    #[must_use]
    pub fn roots(&self) -> &'a [PhysAddr] {
        self.roots
    }

    /// A walk over all these spaces (follow consumer, no owner index).
    pub fn walk(&self) -> Walk<'a, P, M> {
        Walk::from_roots(self.mem, Roots::Many(self.roots)).with_mode(self.mode)
    }

    /// Translates `va` in `space`, as the hardware would (aliases resolve
    /// to the tables they name): a direct descent from the root, without
    /// building a walk.
    ///
    /// # Errors
    ///
    /// [`WalkError::NoSuchSpace`] if `space` is not one of the roots;
    /// [`WalkError::Unaddressable`] if `va` is not an address of the mode
    /// (above 4 GiB in a 32-bit mode, not canonical in x86-64).
    #[inline(always)]
    pub fn translate(&self, space: SpaceId, va: VirtAddr) -> Result<Translation, WalkError> {
        let root = *self
            .roots
            .get(space.index())
            .ok_or(WalkError::NoSuchSpace(space.index()))?;
        // The root table is fetched before the VA is looked at, and both
        // are matched together, so that the fetch happens on every path
        // and a loop translating many VAs of one space hoists it (tested
        // first, the VA check lets the compiler sink the fetch below it:
        // 29 instructions per i686 translation instead of 19, on the v2p
        // benchmark). Always inlined: out of line, an x86-64 translation
        // cost 176 instead of 59 (the mode value, LA57 included, unknown).
        let root = self.mode.root_table(root);
        let first = self.mem.table(root, P::table_bytes(self.mode.root_level()));
        match (self.mode.addressable(va.0), first) {
            // Taken apart and put back on purpose: matched whole (`(true,
            // first)`), the fetch sank below the VA test again (29.3).
            (true, Ok(t)) => Ok(translate(self.mode, self.mem, space, (root, Ok(t)), va)),
            (true, Err(e)) => Ok(translate(self.mode, self.mem, space, (root, Err(e)), va)),
            (false, _) => Err(WalkError::Unaddressable(va)),
        }
    }
}

/// Translates `va` in the space `space` whose root table is at `root`,
/// already fetched ([`Spaces::translate`] derives and fetches it before
/// looking at the VA, see there). `va` must be an address of the mode.
#[inline(always)]
pub(crate) fn translate<'m, P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &'m M,
    space: SpaceId,
    root: (PhysAddr, Result<Table<'m>, MemError>),
    va: VirtAddr,
) -> Translation {
    let region = |level: Level, bits: u32| {
        let shift = P::shift(level) + bits;
        if shift >= 64 {
            0
        } else {
            va.0 & !((1 << shift) - 1)
        }
    };
    let mapped = |pa, raw, level, access| {
        Translation::Mapped(Leaf {
            space,
            va: VirtAddr(region(level, 0)),
            pa,
            entry: raw,
            level,
            size_log2: P::shift(level) as u8,
            access,
        })
    };
    match lookup_from(mode, mem, root, va.0, Level::PT) {
        // A 4 KiB page, its own arm so that its region is a constant mask.
        Found::Entry {
            entry: Entry::Page(pa),
            raw,
            level: Level::PT,
            access,
        } => mapped(pa, raw, Level::PT, access),
        Found::Entry {
            entry: Entry::Page(pa),
            raw,
            level,
            access,
        } => mapped(pa, raw, level, access),
        Found::Entry {
            entry: Entry::Reserved(pa),
            level,
            ..
        } => Translation::Fault(Fault {
            space,
            va: VirtAddr(region(level, 0)),
            level,
            pa,
            reason: FaultReason::Reserved,
        }),
        Found::Entry { .. } => Translation::Unmapped,
        Found::Fault { level, pa, reason } => Translation::Fault(Fault {
            space,
            va: VirtAddr(mode.canonical(region(level, P::index_bits(level)))),
            level,
            pa,
            reason,
        }),
    }
}
