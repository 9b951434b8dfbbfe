//! Error values: why memory could not be read, why a walk could not be
//! built. All are small `Copy` types that carry the offending value.

use core::fmt;

use crate::addr::PhysAddr;

/// Why a physical read failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum MemError {
    /// Some byte of `[pa, pa + len)` lies outside every region of memory.
    OutOfBounds {
        /// First byte asked for.
        pa: PhysAddr,
        /// Bytes asked for.
        len: u64,
    },
    /// `[pa, pa + len)` is in memory but spans two separately backed
    /// regions, so it cannot be lent as one slice.
    Split {
        /// First byte asked for.
        pa: PhysAddr,
        /// Bytes asked for.
        len: u64,
    },
    /// `[pa, pa + len)` is live memory (a running guest), which is read
    /// with volatile loads and never lent as a slice.
    Live {
        /// First byte asked for.
        pa: PhysAddr,
        /// Bytes asked for.
        len: u64,
    },
}

impl MemError {
    /// The first physical address of the failed read.
    #[must_use]
    pub const fn pa(self) -> PhysAddr {
        match self {
            MemError::OutOfBounds { pa, .. }
            | MemError::Split { pa, .. }
            | MemError::Live { pa, .. } => pa,
        }
    }
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemError::OutOfBounds { pa, len } => {
                write!(f, "{len} bytes at {pa} lie outside physical memory")
            }
            MemError::Split { pa, len } => {
                write!(f, "{len} bytes at {pa} span two memory regions")
            }
            MemError::Live { pa, len } => {
                write!(
                    f,
                    "{len} bytes at {pa} are live memory, never lent as a slice"
                )
            }
        }
    }
}

impl core::error::Error for MemError {}

/// Why a walk could not read (or could not track) a table.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum FaultReason {
    /// The table lies (partly) outside physical memory.
    OutOfBounds,
    /// The table spans two separately backed memory regions.
    Split,
    /// The table is live memory and something asked to borrow it as a
    /// slice (the walk itself never does).
    Live,
    /// The owner index is full: the table could not be recorded, so it is
    /// not descended (an alias is never silently missed).
    IndexFull,
    /// The entry has reserved bits set: the hardware raises a page fault,
    /// so it translates nothing.
    Reserved,
}

impl FaultReason {
    /// A short, stable, lower-case name (used by the CLI).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultReason::OutOfBounds => "out-of-bounds",
            FaultReason::Split => "split",
            FaultReason::Live => "live",
            FaultReason::IndexFull => "index-full",
            FaultReason::Reserved => "reserved",
        }
    }
}

impl From<MemError> for FaultReason {
    fn from(e: MemError) -> Self {
        match e {
            MemError::OutOfBounds { .. } => FaultReason::OutOfBounds,
            MemError::Split { .. } => FaultReason::Split,
            MemError::Live { .. } => FaultReason::Live,
        }
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a walk (or a set of spaces) could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum WalkError {
    /// The same root appears twice: that would silently alias a whole
    /// space to another.
    DuplicateRoot {
        /// The root.
        root: PhysAddr,
        /// Index of its first appearance.
        first: usize,
        /// Index of the repeat.
        second: usize,
    },
    /// More roots than a [`SpaceId`](crate::SpaceId) can number.
    TooManyRoots(usize),
    /// A space index past the end of the roots.
    NoSuchSpace(usize),
    /// A VA the paging mode cannot address: above 4 GiB in a 32-bit
    /// mode, or not canonical in x86-64.
    Unaddressable(crate::VirtAddr),
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalkError::DuplicateRoot {
                root,
                first,
                second,
            } => write!(
                f,
                "root {root} (root {second}) names the same table as root {first}: a root is given twice"
            ),
            WalkError::TooManyRoots(n) => write!(f, "{n} roots are more than a walk can number"),
            WalkError::NoSuchSpace(n) => write!(f, "there is no space {n}"),
            WalkError::Unaddressable(va) => {
                write!(f, "{va} is not an address this paging mode can translate")
            }
        }
    }
}

impl core::error::Error for WalkError {}
