//! Small value types the rest of the crate speaks in: guest-virtual and
//! guest-physical addresses, address-space ids and table levels.
//!
//! They carry no behaviour beyond formatting and a few helpers; nothing
//! here knows about paging modes or memory.

use core::fmt;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address as a plain integer.
            #[must_use]
            pub const fn as_u64(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address! {
    /// A guest-virtual address (a VA inside one address space).
    VirtAddr
}

address! {
    /// A guest-physical address (byte `i` of guest memory is `PhysAddr(i)`).
    PhysAddr
}

/// An address space: the index of its root in the roots a walk was given.
///
/// Index order is the caller's order of primacy: the first space that
/// reaches a table owns it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct SpaceId(pub u32);

impl SpaceId {
    /// The index into the walk's roots.
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "space {}", self.0)
    }
}

/// A page-table level, numbered from the bottom: level 1 is the page table
/// whose entries map 4 KiB pages, the root is level `PagingMode::LEVELS`
/// (2 on i686: the page directory).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct Level(pub u8);

impl Level {
    /// The page table (entries map 4 KiB pages).
    pub const PT: Level = Level(1);

    /// The level as a number.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
