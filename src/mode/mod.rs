//! Paging modes: the geometry and entry decoding of one kind of x86 page
//! table, as data the walker is generic over.
//!
//! The walker never names a mode: it asks the [`PagingMode`] trait how many
//! levels there are, how many VA bits each level indexes, how wide an entry
//! is and what an entry means. [`I686`] (32-bit paging, 4 KiB and 4 MiB
//! pages) is the first implementation; PAE and 4-level paging slot in as
//! further implementations without touching the walker.

mod i686;

use core::fmt;
use core::ops::BitAnd;

pub use i686::I686;

use crate::addr::{Level, PhysAddr};

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// What one page-table entry means at a given level.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Entry {
    /// Not present: nothing is mapped through it.
    Absent,
    /// Present, points at the next-lower-level table at this address.
    Table(PhysAddr),
    /// Present, maps a page (4 KiB at level 1, a large page above) whose
    /// frame starts at this address.
    Page(PhysAddr),
    /// Present, but with bits set that the format reserves: the hardware
    /// raises a page fault, so it translates nothing. Carries the address
    /// the entry names.
    Reserved(PhysAddr),
}

/// The geometry and entry format of an x86 paging mode.
///
/// Levels are numbered from the bottom: level 1 is the page table whose
/// entries map 4 KiB pages; the root table is level [`LEVELS`](Self::LEVELS).
/// A mode value may carry options (such as [`I686::pse`]); geometry is
/// fixed per type.
///
/// This trait is sealed: the walker relies on its invariants (entries of
/// level 1 are pages or absent; `shift` grows by `index_bits` per level).
pub trait PagingMode: Copy + fmt::Debug + Send + Sync + 'static + Sealed {
    /// Number of table levels, root included.
    const LEVELS: u8;
    /// Bytes per entry (4 or 8).
    const ENTRY_BYTES: usize;
    /// Virtual-address bits translated.
    const VA_BITS: u32;
    /// log2 of the smallest page size.
    const PAGE_SHIFT: u32 = 12;
    /// The present bits of the entries packed in one little-endian `u64`
    /// (for skipping absent entries several at a time).
    const PRESENT_WORDS: u64;

    /// log2 of the number of entries in a table at `level`.
    fn index_bits(level: Level) -> u32;

    /// Bytes of VA one entry of a table at `level` maps (log2).
    fn shift(level: Level) -> u32;

    /// Decodes a raw entry read from a table at `level`.
    fn decode(self, raw: u64, level: Level) -> Entry;

    /// The root table's address for a root given as CR3 holds it (the
    /// flag bits below the address, such as PWT and PCD, dropped).
    fn root_table(cr3: PhysAddr) -> PhysAddr;

    /// The frame address of a present level-1 entry (what `decode` returns
    /// in `Entry::Page` at level 1).
    fn pte_frame(raw: u64) -> PhysAddr;

    /// The access one entry grants on its own (its RW and US bits).
    fn access(raw: u64) -> Access;

    /// Reads entry `i` of a table (little-endian, `ENTRY_BYTES` wide).
    ///
    /// # Panics
    ///
    /// If `table` has no entry `i`.
    fn load(table: &[u8], i: usize) -> u64;

    /// The flag bits of an entry (everything that is not address): what a
    /// rebuilt entry copies. `large` for a large-page entry, whose
    /// address field is narrower.
    fn flags(raw: u64, large: bool) -> u64;

    /// The flags a 4 KiB entry needs to map part of a large page whose
    /// entry has `large_flags` (e.g. the PAT bit moves).
    fn small_flags(large_flags: u64) -> u64;

    /// A present entry pointing at the table `table`, with `flags` (the
    /// page-size bit is cleared, present is set). `None` if the address
    /// cannot be encoded (misaligned, or too high for the format).
    fn table_entry(table: PhysAddr, flags: u64) -> Option<u64>;

    /// A present entry mapping a page at `pa` from a table at `level`
    /// (level 1: a 4 KiB page; above: a large page, if the mode has one
    /// at that level), with `flags`. `None` if it cannot be encoded.
    fn page_entry(self, pa: PhysAddr, level: Level, flags: u64) -> Option<u64>;

    /// Writes entry `i` of a table (little-endian, `ENTRY_BYTES` wide).
    ///
    /// # Panics
    ///
    /// If `table` has no entry `i`.
    fn store(table: &mut [u8], i: usize, raw: u64);

    /// Number of entries in a table at `level`.
    #[inline]
    fn entries(level: Level) -> usize {
        1 << Self::index_bits(level)
    }

    /// Bytes of a table at `level`.
    #[inline]
    fn table_bytes(level: Level) -> usize {
        Self::entries(level) * Self::ENTRY_BYTES
    }

    /// The root's level.
    #[inline]
    fn root_level() -> Level {
        Level(Self::LEVELS)
    }

    /// Index into a table at `level` of the entry mapping `va`.
    #[inline]
    fn index(va: u64, level: Level) -> usize {
        ((va >> Self::shift(level)) & ((1 << Self::index_bits(level)) - 1)) as usize
    }
}

/// Effective access along a translation path: RW and US are the AND of
/// every level's bits, as the hardware applies them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Access(u8);

impl Access {
    /// Writes allowed (RW set at every level).
    pub const WRITABLE: Access = Access(1);
    /// User-mode access allowed (US set at every level).
    pub const USER: Access = Access(2);
    /// Neither: read-only, supervisor-only.
    pub const NONE: Access = Access(0);
    /// Everything: the identity for composing a path.
    pub const ALL: Access = Access(3);

    /// From raw bits (only the two low bits are kept).
    #[must_use]
    pub const fn from_bits(bits: u8) -> Access {
        Access(bits & 3)
    }

    /// The raw bits.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether writes are allowed.
    #[must_use]
    pub const fn writable(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether user mode may access.
    #[must_use]
    pub const fn user(self) -> bool {
        self.0 & 2 != 0
    }
}

impl BitAnd for Access {
    type Output = Access;
    #[inline]
    fn bitand(self, rhs: Access) -> Access {
        Access(self.0 & rhs.0)
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Access({self})")
    }
}

/// `rw` or `ro`, then `user` or `kernel`, comma-separated.
impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.writable() { "rw" } else { "ro" })?;
        f.write_str(if self.user() { ",user" } else { ",kernel" })
    }
}
