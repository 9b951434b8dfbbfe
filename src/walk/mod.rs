//! The walk: one zero-allocation, stack-allocated descent over many
//! address spaces, exposed as `Iterator<Item = WalkEvent>`.
//!
//! [`Walk`] holds a fixed stack of directory frames (one per level above
//! the page tables, each a borrowed table slice with a cursor) and a
//! separate cursor over the page table being scanned, the hot loop: `fold`
//! takes it 16 entries at a time (absent blocks skipped whole, full blocks
//! emitted without per-entry tests), `next` entry by entry with the same
//! skipping of absent runs (8-byte entries: 64 classified at once, their
//! presence mask kept in the cursor). Ownership of tables is
//! recorded in a caller-provided [`Owners`] index; what happens when a
//! space reaches a table another (space, VA) owns is the walk's alias
//! policy:
//!
//! - [`Refs`] (the references consumer, `walk_va_spaces`' shape): emit one
//!   [`Aliasing`] event and do not descend;
//! - [`Follow`] (the follow consumer, `virt_to_phys`' shape): [`resolve`]
//!   the alias in the follow memory, descend the resolved table under our
//!   own path (our VAs, our range, our access) and emit its leaves; emit
//!   [`Invalid`] when it resolves to nothing.
//!
//! Both share every line of the descent; the policy only decides what an
//! owned table means. The files follow that split: `policy` (the
//! typestate), `scan` (the page-table scanner), `block` (8-byte blocks'
//! presence masks), `machine` (the state machine and the iterator),
//! `directory` (internal iteration's shortcut through page directories);
//! this one holds the walk's state and how it is built.
//!
//! VAs: the walk runs over the mode's linear space `0..2^va_bits`
//! (frames keep linear bases, so a range is one interval even across
//! x86-64's non-canonical hole) and reports every VA canonical.

mod block;
mod directory;
mod machine;
mod policy;
mod scan;

use arrayvec::ArrayVec;
use core::fmt;

use crate::addr::{Level, PhysAddr, SpaceId};
use crate::error::WalkError;
use crate::mem::{PhysMem, Table};
use crate::mode::{Access, I686, PagingMode};
use crate::owners::{DetectsAliases, NoOwners, Owners};
#[cfg(doc)]
use crate::{
    event::{Aliasing, Invalid, WalkEvent},
    resolve::resolve,
};
pub use policy::{AliasPolicy, Follow, Refs};
use scan::PtScan;

/// Deepest table hierarchy any paging mode may have (5-level paging).
pub const MAX_LEVELS: usize = 5;

/// The roots of a walk: one owned, or a borrowed slice.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Roots<'a> {
    One(PhysAddr),
    Many(&'a [PhysAddr]),
}

impl Roots<'_> {
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<PhysAddr> {
        match self {
            Roots::One(r) => (i == 0).then_some(*r),
            Roots::Many(r) => r.get(i).copied(),
        }
    }

    /// Checks the roots can be numbered and no root table repeats (roots
    /// compared as the tables they name in `mode`: CR3 flag bits aside).
    pub(crate) fn check<P: PagingMode>(&self, mode: P) -> Result<(), WalkError> {
        let Roots::Many(roots) = *self else {
            return Ok(());
        };
        if u32::try_from(roots.len()).is_err() {
            return Err(WalkError::TooManyRoots(roots.len()));
        }
        for (second, r) in roots.iter().enumerate() {
            let table = mode.root_table(*r);
            if let Some(first) = roots[..second]
                .iter()
                .position(|&x| mode.root_table(x) == table)
            {
                return Err(WalkError::DuplicateRoot {
                    root: *r,
                    first,
                    second,
                });
            }
        }
        Ok(())
    }
}

/// One directory table (level 2 and up) being scanned.
#[derive(Clone, Copy)]
struct Frame<'a> {
    /// The whole table.
    table: Table<'a>,
    /// VA mapped by entry 0.
    base: u64,
    /// Next entry to look at.
    next: u32,
    /// One past the last entry intersecting the range.
    end: u32,
    level: Level,
    /// Effective access of the path above this table.
    access: Access,
    /// Reached by following an alias: no ownership is recorded below, and
    /// tables are read from the follow memory.
    followed: bool,
}

/// A walk over one or more address spaces: a stack-allocated state machine
/// yielding [`WalkEvent`]s in walk order.
///
/// Build one with [`Walk::new`] (i686, whole address space, no owner
/// index, follow consumer), then adjust it with [`with_mode`](Self::with_mode),
/// [`range`](Self::range), [`with_owners`](Self::with_owners), and choose
/// the consumer with [`references`](Self::references) or
/// [`follow_aliases`](Self::follow_aliases). The walk starts on the first
/// call to `next` (or `fold`); it never allocates.
///
/// # Examples
///
/// Two spaces sharing one kernel page table:
///
/// ```
/// use ptwalk::{OwnerIndex, OwnerSlot, PhysAddr, Walk, WalkEvent};
///
/// let mut mem = vec![0u8; 0x4000];
/// let put = |mem: &mut Vec<u8>, pa: usize, v: u32| mem[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
/// put(&mut mem, 0x1000 + 0x300 * 4, 0x3027); // space 0: 0xC000_0000 -> PT 0x3000
/// put(&mut mem, 0x2000 + 0x300 * 4, 0x3027); // space 1: the same PT
/// put(&mut mem, 0x3000, 0x0080_0003);        // PT: 0xC000_0000 -> 0x80_0000
/// let roots = [PhysAddr(0x1000), PhysAddr(0x2000)];
/// let mut slots = [OwnerSlot::EMPTY; 64];
///
/// // References: space 1 gets one Aliasing event for the shared table.
/// let walk = Walk::new(&mem[..], &roots)?.with_owners(OwnerIndex::new(&mut slots[..]));
/// let events: Vec<_> = walk.references().collect();
/// assert!(matches!(events[0], WalkEvent::Leaf(l) if l.space.0 == 0));
/// assert!(matches!(events[1], WalkEvent::Aliasing(a) if a.space.0 == 1 && a.owner.0 == 0));
///
/// // Follow: space 1 sees the owner's leaf at its own VA.
/// let walk = Walk::new(&mem[..], &roots)?.with_owners(OwnerIndex::new(&mut slots[..]));
/// let leaves: Vec<_> = walk.follow_aliases().filter_map(|e| e.leaf().copied()).collect();
/// assert_eq!(leaves.len(), 2);
/// assert_eq!((leaves[1].space.0, leaves[1].va.0, leaves[1].pa.0), (1, 0xC000_0000, 0x80_0000));
/// # Ok::<(), ptwalk::WalkError>(())
/// ```
#[must_use = "a walk does nothing until iterated"]
pub struct Walk<'a, P, M: ?Sized, O = NoOwners, F = Follow<'a, M>> {
    mode: P,
    mem: &'a M,
    roots: Roots<'a>,
    owners: O,
    policy: F,
    /// The range as asked for, before clipping to the mode's VAs.
    address: u64,
    len: u64,
    /// The clipped range `[start, end)`, linear (see the module docs).
    start: u64,
    end: u64,
    started: bool,
    next_space: u32,
    space: u32,
    /// The page table being scanned (empty `rest` when none is).
    pt: PtScan<'a>,
    /// Directory tables being scanned, root first (page tables are in `pt`).
    stack: ArrayVec<Frame<'a>, { MAX_LEVELS - 1 }>,
}

impl<'a, M: PhysMem + ?Sized> Walk<'a, I686, M, NoOwners, Follow<'a, M>> {
    /// A walk of every space in `roots` (in that order of primacy) over
    /// `mem`: i686 with PSE, the whole address space, no owner index,
    /// following aliases. [`new_in`](Walk::new_in) for another mode.
    ///
    /// # Errors
    ///
    /// [`WalkError::DuplicateRoot`] if a root repeats (checked without
    /// allocating, by comparing every pair: tens of milliseconds at ten
    /// thousand roots); [`WalkError::TooManyRoots`] past `u32::MAX` roots.
    pub fn new(mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, WalkError> {
        Walk::new_in(I686::default(), mem, roots)
    }

    /// A walk of the single space rooted at `root`.
    pub fn single(mem: &'a M, root: PhysAddr) -> Self {
        Self::from_roots(mem, Roots::One(root))
    }

    /// A walk of roots already checked.
    pub(crate) fn from_roots(mem: &'a M, roots: Roots<'a>) -> Self {
        Self::rebuild(
            I686::default(),
            mem,
            roots,
            (0, u64::MAX),
            NoOwners,
            Follow(mem, true),
        )
    }
}

impl<'a, P: PagingMode, M: PhysMem + ?Sized> Walk<'a, P, M, NoOwners, Follow<'a, M>> {
    /// A walk in paging mode `mode` of every space in `roots` (as CR3
    /// holds them; in that order of primacy) over `mem`: the whole address
    /// space, no owner index, following aliases.
    ///
    /// Roots are compared as the tables `mode` derives from them, so two
    /// PAE roots 32 bytes apart are two spaces (`Walk::new(..)
    /// .with_mode(..)` would compare them as i686 page directories).
    ///
    /// # Examples
    ///
    /// ```
    /// use ptwalk::{Pae, PhysAddr, Walk, WalkExt};
    ///
    /// let mut mem = vec![0u8; 0x4000];
    /// let put = |m: &mut Vec<u8>, pa: usize, v: u64| m[pa..pa + 8].copy_from_slice(&v.to_le_bytes());
    /// put(&mut mem, 0x1020 + 3 * 8, 0x2001); // root 0x1020: PDPTE 3 -> PD 0x2000
    /// put(&mut mem, 0x1040 + 3 * 8, 0x2001); // root 0x1040, the same PD
    /// put(&mut mem, 0x2000, 0x8000_0000_0040_00e3); // 0xC000_0000: 2 MiB page, NX
    /// let roots = [PhysAddr(0x1020), PhysAddr(0x1040)];
    /// let leaves: Vec<_> = Walk::new_in(Pae::default(), &mem[..], &roots)?.leaves().collect();
    /// assert_eq!(leaves.len(), 2);
    /// assert_eq!((leaves[1].va.0, leaves[1].pa.0, leaves[1].size()), (0xC000_0000, 0x40_0000, 1 << 21));
    /// assert!(!leaves[1].access.executable());
    /// # Ok::<(), ptwalk::WalkError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Walk::new`].
    pub fn new_in(mode: P, mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, WalkError> {
        let roots = Roots::Many(roots);
        roots.check(mode)?;
        Ok(Walk::from_roots(mem, roots).with_mode(mode))
    }
}

impl<'a, P: PagingMode, M: PhysMem + ?Sized, O: Owners, F: AliasPolicy<'a>> Walk<'a, P, M, O, F> {
    /// This walk's memory, roots and range with another mode, owner index
    /// and policy, not started.
    fn rebuild<Q: PagingMode, O2: Owners, G: AliasPolicy<'a>>(
        mode: Q,
        mem: &'a M,
        roots: Roots<'a>,
        (address, len): (u64, u64),
        owners: O2,
        policy: G,
    ) -> Walk<'a, Q, M, O2, G> {
        Walk {
            mode,
            mem,
            roots,
            owners,
            policy,
            address,
            len,
            start: 0,
            end: 0,
            started: false,
            next_space: 0,
            space: 0,
            pt: PtScan::IDLE,
            stack: ArrayVec::new(),
        }
        .restarted()
    }

    /// Walks with paging mode `mode` instead (e.g. `I686 { pse: false }`).
    /// The roots stay as the constructor checked them (`Walk::new`: as
    /// i686 page directories): for any mode but i686, build with
    /// [`Walk::new_in`], which compares them as that mode's root tables.
    pub fn with_mode<Q: PagingMode>(self, mode: Q) -> Walk<'a, Q, M, O, F> {
        let range = (self.address, self.len);
        Self::rebuild(mode, self.mem, self.roots, range, self.owners, self.policy)
    }

    /// Records ownership in `owners` (cleared when the walk starts), so the
    /// walk detects aliases. Pass `&mut index` to reuse an index.
    pub fn with_owners<O2: Owners>(self, owners: O2) -> Walk<'a, P, M, O2, F> {
        let range = (self.address, self.len);
        Self::rebuild(self.mode, self.mem, self.roots, range, owners, self.policy)
    }

    /// Restricts the walk to the VAs of the mode in `[address & !0xFFF,
    /// address + len)` (the sum saturating; a 32-bit mode ends at 4 GiB,
    /// x86-64 skips the non-canonical hole: a range across it is the
    /// lower half's end and the upper half's start, never wrapped). Pages
    /// and regions intersecting it are reported whole. `len == 0` is an
    /// empty range: the walk yields nothing.
    pub fn range(mut self, address: u64, len: u64) -> Self {
        self.address = address;
        self.len = len;
        self.restarted()
    }

    /// The references consumer (`walk_va_spaces`' shape): leaves of owned
    /// tables, and one [`WalkEvent::Aliasing`] per entry reaching a table
    /// owned elsewhere, without descending it.
    pub fn references(self) -> Walk<'a, P, M, O, Refs>
    where
        O: DetectsAliases,
    {
        self.with_policy(Refs)
    }

    /// The follow consumer (`virt_to_phys`' shape): each alias is resolved
    /// in the walked memory and the resolved table's leaves are reported
    /// at our VAs with our access, so every space reports every VA it
    /// reaches.
    pub fn follow_aliases(self) -> Walk<'a, P, M, O, Follow<'a, M>> {
        let mem = self.mem;
        self.with_policy(Follow(mem, true))
    }

    /// The follow consumer resolving aliases in `mem` (for instance tables
    /// being rebuilt, or memory edited since): an alias whose owner entry
    /// is not valid there yields [`WalkEvent::Invalid`] for our region.
    pub fn follow_aliases_in<R: PhysMem + ?Sized>(
        self,
        mem: &'a R,
    ) -> Walk<'a, P, M, O, Follow<'a, R>>
    where
        O: DetectsAliases,
    {
        self.with_policy(Follow(mem, false))
    }

    fn with_policy<G: AliasPolicy<'a>>(self, policy: G) -> Walk<'a, P, M, O, G> {
        let range = (self.address, self.len);
        Self::rebuild(self.mode, self.mem, self.roots, range, self.owners, policy)
    }

    /// The paging mode.
    pub fn mode(&self) -> P {
        self.mode
    }

    /// The root of space `space`, if there is one.
    #[must_use]
    pub fn root(&self, space: SpaceId) -> Option<PhysAddr> {
        self.roots.get(space.index())
    }

    /// The owner index.
    pub fn owners(&self) -> &O {
        &self.owners
    }

    /// Ends the walk and gives the owner index back.
    pub fn into_owners(self) -> O {
        self.owners
    }

    /// Computes the clipped range and forgets any progress.
    fn restarted(mut self) -> Self {
        let page = 1u64 << P::PAGE_SHIFT;
        self.start = self.mode.linear_bound(self.address) & !(page - 1);
        self.end = if self.len == 0 {
            self.start // an empty request stays empty after aligning down
        } else {
            self.mode
                .linear_bound(self.address.saturating_add(self.len))
        };
        self.started = false;
        self.next_space = 0;
        self.pt = PtScan::IDLE;
        self.stack.clear();
        self
    }
}

impl<P: fmt::Debug, M: ?Sized, O, F> fmt::Debug for Walk<'_, P, M, O, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Walk")
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .field("range", &(self.start..self.end))
            .field("space", &self.space)
            .field("depth", &self.stack.len())
            .finish_non_exhaustive()
    }
}

/// The follow consumer of a walk (the `virt_to_phys` shape).
pub type FollowAliases<'a, P, M, O> = Walk<'a, P, M, O, Follow<'a, M>>;
/// The references consumer of a walk (the `walk_va_spaces` shape).
pub type References<'a, P, M, O> = Walk<'a, P, M, O, Refs>;
