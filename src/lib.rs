//! An alias-aware x86 page-table walker for hypervisors and
//! memory-forensics tools.
//!
//! A guest keeps one page-table root per address space, and those spaces
//! *share* tables (every process page directory points at the same kernel
//! page tables). `ptwalk` walks many roots in one descent, notices when a
//! space reaches a table that an earlier (space, VA) already owns, and
//! reports that as an [`Aliasing`] reference. Two consumers share that
//! descent:
//!
//! ```text
//!            roots, range, owner index (caller's storage)
//!                              │
//!   PhysMem ──lend table──▶  Walk  (stack of frames, no allocation)
//!                              │  Leaf / Aliasing / Invalid / Fault
//!          ┌───────────────────┴────────────────────┐
//!    .references()                          .follow_aliases()
//!    leaves of owned tables +               aliases resolved (resolve())
//!    one Aliasing per shared entry          and descended at our VAs:
//!    (snapshot rebuild re-links them)       every space sees every VA
//!          └──────────── .leaves() / .coalesce() ───┘
//! ```
//!
//! # Semantics
//!
//! - **Order:** roots in the order given, then ascending VA, depth first.
//! - **Ownership:** a non-root table, keyed by (physical address, level),
//!   is owned by the first (space, VA) whose present table entry reaches
//!   it. Every later reach, from another space or the same space at
//!   another VA, is an alias.
//! - **Resolution** ([`resolve`]) looks the owner's entry up in the memory
//!   the consumer works with: a present table entry is what our entry
//!   means; anything else means our entry is invalid.
//! - **Access:** RW and US are the AND of every level's bits, NX their OR
//!   ([`Access`]); when following an alias the path is ours (our directory
//!   entry over the owner's table).
//! - **Modes:** [`I686`], [`Pae`] and [`X86_64`] (4- and 5-level), options
//!   on the mode value; VAs are reported canonical; an entry with reserved
//!   bits translates nothing and is a [`Fault`]. Levels count from the leaf
//!   table (1) up.
//! - **Faults:** a table outside memory is a [`Fault`] event, and the walk
//!   goes on; leaf frames are never read. Nothing panics; the descent
//!   depth is fixed by the paging mode.
//!
//! # Example
//!
//! ```
//! use ptwalk::{OwnerIndex, OwnerSlot, PhysAddr, Walk, WalkEvent, WalkExt};
//!
//! // Two spaces (roots 0x1000, 0x2000) sharing the kernel table at 0x3000.
//! let mut mem = vec![0u8; 0x4000];
//! let mut put = |pa: usize, v: u32| mem[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
//! put(0x1000 + 0x300 * 4, 0x3003);
//! put(0x2000 + 0x300 * 4, 0x3003);
//! put(0x3000, 0x0080_0003);
//! let roots = [PhysAddr(0x1000), PhysAddr(0x2000)];
//! let mut slots = [OwnerSlot::EMPTY; 32];
//!
//! let refs: Vec<WalkEvent> = Walk::new(&mem[..], &roots)?
//!     .with_owners(OwnerIndex::new(&mut slots[..]))
//!     .references()
//!     .collect();
//! assert!(matches!(refs[1], WalkEvent::Aliasing(a) if a.owner.0 == 0 && a.space.0 == 1));
//!
//! let followed = Walk::new(&mem[..], &roots)?.follow_aliases().leaves().count();
//! assert_eq!(followed, 2); // both spaces map 0xC000_0000
//! # Ok::<(), ptwalk::WalkError>(())
//! ```
//!
//! The same in 4-level x86-64 paging, where Linux shares the kernel half
//! at the top level (PML4 entry 256 and up) and VAs are canonical:
//!
//! ```
//! use ptwalk::{OwnerIndex, OwnerSlot, PhysAddr, Walk, WalkEvent, X86_64};
//!
//! let mut mem = vec![0u8; 0x6000];
//! let mut put = |pa: usize, v: u64| mem[pa..pa + 8].copy_from_slice(&v.to_le_bytes());
//! put(0x1000 + 256 * 8, 0x3003); // both PML4s: entry 256 -> PDPT 0x3000
//! put(0x2000 + 256 * 8, 0x3003);
//! put(0x3000, 0x4003); // PDPT -> PD 0x4000
//! put(0x4000, 0x8000_0000_0020_0083); // a 2 MiB page, NX
//! let roots = [PhysAddr(0x1000), PhysAddr(0x2000)];
//! let mut slots = [OwnerSlot::EMPTY; 32];
//! let events: Vec<WalkEvent> = Walk::new_in(X86_64::default(), &mem[..], &roots)?
//!     .with_owners(OwnerIndex::new(&mut slots[..]))
//!     .references()
//!     .collect();
//! let WalkEvent::Leaf(l) = events[0] else { panic!() };
//! assert_eq!((l.va.0, l.size(), l.access.executable()), (0xffff_8000_0000_0000, 1 << 21, false));
//! assert!(matches!(events[1], WalkEvent::Aliasing(a) if a.level.0 == 4 && a.owner.0 == 0));
//! # Ok::<(), ptwalk::WalkError>(())
//! ```
//!
//! # Features
//!
//! - `alloc`: [`GrowableOwners`], [`walk_va_spaces`] and [`compact`]
//!   (snapshot compaction that preserves sharing).
//! - `std` (default): `alloc`, plus `std::error::Error` through `core`.
//! - `cli` (default): the `ptwalk` command-line tool.
//!
//! The walk itself builds and runs with none of them.

#![no_std]
// `unsafe` is allowed only where it is needed: the raw-pointer memory
// backends in `mem`, each item with its contract, and the SSE2 intrinsics
// of the scanner's block classification (`walk/block.rs`).
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]
// Keep no_std honest (the binary and tests are std code and exempt).
#![warn(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod addr;
pub use addr::{Level, PhysAddr, SpaceId, VirtAddr};

mod error;
pub use error::{FaultReason, MemError, WalkError};

mod mem;
pub use mem::{
    Image, PhysMem, RawMem, Regions, RegionsError, Table, TableView, VolatileMem, VolatileSlice,
};

pub mod mode;
pub use mode::{Access, I686, Pae, PagingMode, X86_64};

mod event;
pub use event::{Aliasing, Fault, Invalid, Leaf, WalkEvent};
pub use mode::{COW_BIT, FLAG_BITS};

mod owners;
#[cfg(feature = "alloc")]
pub use owners::GrowableOwners;
pub use owners::{Claim, DetectsAliases, NoOwners, OwnerIndex, OwnerSlot, Owners};

mod lookup;

mod resolve;
pub use resolve::{Resolution, resolve, resolve_alias};

mod walk;
pub use walk::{AliasPolicy, Follow, FollowAliases, MAX_LEVELS, References, Refs, Walk};

mod adapt;
pub use adapt::{Coalesce, Counts, Leaves, Run, WalkExt};

#[cfg(feature = "alloc")]
pub mod compact;
#[cfg(feature = "alloc")]
pub use compact::{TableWriter, WriteError};

mod api;
#[cfg(feature = "alloc")]
pub use api::walk_va_spaces;
pub use api::{Spaces, Translation, virt_to_phys};

mod facts {
    //! Compile-time facts the rest of the crate promises.
    use super::*;
    use static_assertions::{assert_impl_all, assert_obj_safe, const_assert, const_assert_eq};

    const_assert_eq!(<I686 as PagingMode>::ENTRY_BYTES, 4);
    const_assert_eq!(<Pae as PagingMode>::ENTRY_BYTES, 8);
    const_assert!(<I686 as PagingMode>::MAX_LEVELS as usize <= MAX_LEVELS);
    const_assert!(<Pae as PagingMode>::MAX_LEVELS as usize <= MAX_LEVELS);
    const_assert!(<X86_64 as PagingMode>::MAX_LEVELS as usize <= MAX_LEVELS);
    const_assert!(core::mem::size_of::<Leaf>() <= 32);
    const_assert!(core::mem::size_of::<WalkEvent>() <= 56);
    // The whole i686 walk state, with a borrowed owner index: a few cache lines.
    const_assert!(
        core::mem::size_of::<Walk<'static, I686, [u8], OwnerIndex<&'static mut [OwnerSlot]>, Refs>>(
        ) <= 344
    );
    assert_impl_all!(WalkEvent: Copy, Send, Sync);
    assert_impl_all!(Leaf: Copy, Send, Sync);
    // The x86-64 walk state, sized for 5 levels (the stack always holds
    // MAX_LEVELS - 1 frames; the mode value adds its options): 360 bytes.
    const_assert!(
        core::mem::size_of::<Walk<'static, X86_64, [u8], OwnerIndex<&'static mut [OwnerSlot]>, Refs>>(
        ) <= 360
    );
    assert_impl_all!(I686: Copy, Send, Sync);
    // Memory may be handed over as `&dyn PhysMem`.
    assert_obj_safe!(crate::PhysMem);
    assert_impl_all!(Pae: Copy, Send, Sync);
    assert_impl_all!(X86_64: Copy, Send, Sync);
    assert_impl_all!(Walk<'static, I686, [u8]>: Send, Sync, Iterator, core::iter::FusedIterator);
}

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
