//! Paging modes: the geometry and entry decoding of one kind of x86 page
//! table, as data the walker is generic over.
//!
//! The walker never names a mode: it asks the [`PagingMode`] trait how many
//! levels there are, how many VA bits each level indexes, how wide an entry
//! is and what an entry means at a level ([`step`]). Three types cover
//! every x86 mode: [`I686`] (32-bit paging, 4 KiB and 4 MiB pages), [`Pae`]
//! (3 levels, 2 MiB pages, NX) and [`X86_64`] (4- or 5-level paging, 2 MiB
//! and 1 GiB pages, NX, canonical VAs). Their options (CR4.PSE, EFER.NXE,
//! CR4.LA57, MAXPHYADDR) are fields of the mode value.
//!
//! | mode | levels | entry | VA bits | large pages | root from CR3 |
//! |------|--------|-------|---------|-------------|---------------|
//! | `I686` | 2 | 4 B | 32 | 4 MiB (PSE) | bits 12..=31 |
//! | `Pae` | 3 | 8 B | 32 | 2 MiB | 32-byte aligned |
//! | `X86_64` | 4 | 8 B | 48 | 2 MiB, 1 GiB | bits 12..=51 |
//! | `X86_64::LA57` | 5 | 8 B | 57 | 2 MiB, 1 GiB | bits 12..=51 |

mod bits64;
mod i686;
mod pae;
mod x86_64;

use core::fmt;
use core::ops::{BitAnd, BitOr};

pub use i686::I686;
pub use pae::Pae;
pub use x86_64::X86_64;

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
/// entries map 4 KiB pages; the root table is level
/// [`levels`](Self::levels). A mode value carries the options the
/// hardware reads from control registers (CR4.PSE, EFER.NXE, CR4.LA57,
/// MAXPHYADDR); geometry per level is fixed per type.
///
/// Every fact about an entry format lives in the mode: what an entry at a
/// level means ([`decode`](Self::decode)), the access it grants
/// ([`access`](Self::access)), which of its bits are reserved, how a root
/// is derived from CR3, and how an entry is encoded. The walk, alias
/// resolution, translation, the table writer and verify all descend
/// through [`step`] and never look at raw bits themselves.
///
/// This trait is sealed: the walker relies on its invariants (entries of
/// level 1 are pages or absent; `shift` grows by `index_bits` per level;
/// non-root tables are 4 KiB, page aligned).
pub trait PagingMode: Copy + fmt::Debug + Send + Sync + 'static + Sealed {
    /// Bytes per entry (4 or 8).
    const ENTRY_BYTES: usize;
    /// The most levels a value of this type may have.
    const MAX_LEVELS: u8;
    /// Whether VAs are canonical: bits above `va_bits() - 1` copy that
    /// bit (x86-64), rather than being zero (32-bit modes).
    const CANONICAL: bool;
    /// log2 of the smallest page size.
    const PAGE_SHIFT: u32 = 12;
    /// The present bits of the entries packed in one little-endian `u64`
    /// (for skipping absent entries several at a time).
    const PRESENT_WORDS: u64;

    /// Number of table levels, root included.
    fn levels(self) -> u8;

    /// Virtual-address bits translated (32, 48 or 57).
    fn va_bits(self) -> u32;

    /// log2 of the number of entries in a table at `level`.
    fn index_bits(level: Level) -> u32;

    /// Bytes of VA one entry of a table at `level` maps (log2).
    fn shift(level: Level) -> u32;

    /// Decodes a raw entry read from a table at `level`.
    fn decode(self, raw: u64, level: Level) -> Entry;

    /// The table an entry at `level` (above 1) names, if it is a present
    /// table entry with no reserved bit: what `decode` says as
    /// `Entry::Table`, which a descent asks first (the 8-byte modes answer
    /// with one mask and compare instead of a test per rule).
    #[inline]
    fn table_at(self, raw: u64, level: Level) -> Option<PhysAddr> {
        match self.decode(raw, level) {
            Entry::Table(pa) => Some(pa),
            _ => None,
        }
    }

    /// The access one entry at `level` grants on its own (RW, US, and
    /// execute unless NX); the path's access is the AND of its entries'.
    fn access(self, raw: u64, level: Level) -> Access;

    /// The root table's address for a root given as CR3 holds it: the bits
    /// CR3 uses for flags or a PCID dropped (x86-64 also drops bits
    /// 52..=63; the 32-bit modes keep bits above 31 as given, a table a
    /// caller may name although CR3 cannot).
    fn root_table(self, cr3: PhysAddr) -> PhysAddr;

    /// The frame address of a present level-1 entry (what `decode` returns
    /// in `Entry::Page` at level 1, when it is not reserved).
    fn pte_frame(raw: u64) -> PhysAddr;

    /// The bits a present level-1 entry may not set (then it maps
    /// nothing): 0 where a mode reserves none.
    fn pte_reserved_bits(self) -> u64;

    /// Whether a present level-1 entry has reserved bits set (then it maps
    /// nothing). Constant `false` where a mode reserves no PTE bit.
    #[inline]
    fn pte_reserved(self, raw: u64) -> bool {
        raw & self.pte_reserved_bits() != 0
    }

    /// Reads entry `i` of a table (little-endian, `ENTRY_BYTES` wide).
    ///
    /// # Panics
    ///
    /// If `table` has no entry `i`.
    fn load(table: &[u8], i: usize) -> u64;

    /// Writes entry `i` of a table (little-endian, `ENTRY_BYTES` wide).
    ///
    /// # Panics
    ///
    /// If `table` has no entry `i`.
    fn store(table: &mut [u8], i: usize, raw: u64);

    /// The flag bits of an entry (everything that is not address): what a
    /// rebuilt entry copies. `large` for a large-page entry, whose
    /// address field is narrower.
    fn flags(raw: u64, large: bool) -> u64;

    /// The flags a 4 KiB entry needs to map part of a large page whose
    /// entry has `large_flags` (e.g. the PAT bit moves).
    fn small_flags(large_flags: u64) -> u64;

    /// The flags of a directory entry the table writer creates at `level`
    /// when nothing else says (present, and writable and user where the
    /// format has those bits, so the leaves decide).
    fn default_dir_flags(self, level: Level) -> u64;

    /// A present entry at `level` pointing at the table `table`, with
    /// `flags` (the page-size bit is cleared, present is set). `None` if
    /// the address cannot be encoded (misaligned, or too high).
    fn table_entry(self, table: PhysAddr, level: Level, flags: u64) -> Option<u64>;

    /// A present entry mapping a page at `pa` from a table at `level`
    /// (level 1: a 4 KiB page; above: a large page, if the mode has one
    /// at that level), with `flags`. `None` if it cannot be encoded.
    fn page_entry(self, pa: PhysAddr, level: Level, flags: u64) -> Option<u64>;

    /// Number of entries in a table at `level`.
    #[inline]
    fn entries(level: Level) -> usize {
        1 << Self::index_bits(level)
    }

    /// Bytes of a table at `level` (a PAE root is 32 bytes, every other
    /// table 4 KiB).
    #[inline]
    fn table_bytes(level: Level) -> usize {
        Self::entries(level) * Self::ENTRY_BYTES
    }

    /// The root's level.
    #[inline]
    fn root_level(self) -> Level {
        Level(self.levels())
    }

    /// Index into a table at `level` of the entry mapping `va` (canonical
    /// or not: only the bits the level indexes are read).
    #[inline]
    fn index(va: u64, level: Level) -> usize {
        ((va >> Self::shift(level)) & ((1 << Self::index_bits(level)) - 1)) as usize
    }

    /// The canonical form of a VA inside the translated space (bit
    /// `va_bits() - 1` copied upward where the mode is canonical).
    #[inline]
    fn canonical(self, va: u64) -> u64 {
        if Self::CANONICAL {
            let unused = 64 - self.va_bits();
            (((va << unused) as i64) >> unused) as u64
        } else {
            va
        }
    }

    /// The position of a VA in the translated space, `0..2^va_bits()`:
    /// the VA with its copied upper bits dropped, or `None` if it is not
    /// an address of this mode (not canonical, or above 4 GiB in a 32-bit
    /// mode).
    #[inline]
    fn linear(self, va: u64) -> Option<u64> {
        let bits = self.va_bits();
        let low = va & ((1u64 << bits) - 1);
        (self.canonical(low) == va).then_some(low)
    }

    /// Whether `va` is an address of this mode: [`linear`](Self::linear)
    /// is `Some`. One add and one compare for the canonical modes (the
    /// VA plus half the space lies below the space's size), where
    /// `linear` masks, sign-extends and compares.
    #[inline]
    fn addressable(self, va: u64) -> bool {
        let bits = self.va_bits();
        if Self::CANONICAL {
            va.wrapping_add(1 << (bits - 1)) < 1 << bits
        } else {
            va >> bits == 0
        }
    }

    /// The position in `0..=2^va_bits()` of a range bound: where the
    /// canonical addresses at or above `va` begin (a bound in the
    /// non-canonical hole moves up to the hole's end, a bound past the
    /// top to the end of the space).
    #[inline]
    fn linear_bound(self, va: u64) -> u64 {
        let bits = self.va_bits();
        let half = 1u64 << (bits - 1);
        if !Self::CANONICAL {
            va.min(1 << bits)
        } else if va < half {
            va
        } else if va <= 0u64.wrapping_sub(half) {
            half
        } else {
            va - 0u64.wrapping_sub(1 << bits)
        }
    }
}

/// Bit 0 of every x86 entry format: present.
pub const PRESENT: u64 = 1 << 0;

/// Bit 1 of every x86 entry format: writes allowed.
pub const RW: u64 = 1 << 1;

/// Bit 9 of a leaf entry, available to software in every x86 entry
/// format: set by hyperlight-style guests on copy-on-write pages (which
/// are also read-only).
pub const COW_BIT: u64 = 1 << 9;

/// The bits of an entry that are flags rather than address in every
/// format: bits 0..=11 and 52..=63 (NX, protection keys, software bits).
/// Run coalescing compares them.
pub const FLAG_BITS: u64 = 0xFFF | (0xFFF << 52);

/// Bit 12 of a large-page entry in every format: its PAT bit (in a 4 KiB
/// entry bit 12 is address).
pub const LARGE_PAT: u64 = 1 << 12;

/// Bytes of every non-root table (and of a root other than PAE's).
pub const TABLE_BYTES: usize = 4096;

/// What one step down a translation path found: the entry of a table at
/// `level` for a VA, decoded, with the path's access through it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    /// The raw entry.
    pub raw: u64,
    /// What it means.
    pub entry: Entry,
    /// The access of the path down to and including this entry.
    pub access: Access,
}

/// One step of a descent: entry `i` of `table` (a table at `level`),
/// decoded by `mode`, under a path granting `above`. The single place
/// where a descent turns raw bits into meaning: the walk, resolution,
/// translation, the table writer and verify all go through it.
#[inline(always)]
pub fn step<P: PagingMode>(mode: P, raw: u64, level: Level, above: Access) -> Step {
    Step {
        raw,
        entry: mode.decode(raw, level),
        access: above & mode.access(raw, level),
    }
}

/// Effective access along a translation path: RW and US are the AND of
/// every level's bits, and a page is executable unless some level's entry
/// has NX, as the hardware applies them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Access(u8);

impl Access {
    /// Writes allowed (RW set at every level).
    pub const WRITABLE: Access = Access(1);
    /// User-mode access allowed (US set at every level).
    pub const USER: Access = Access(2);
    /// Instruction fetches allowed (NX clear at every level).
    pub const EXECUTE: Access = Access(4);
    /// Nothing: read-only, supervisor-only, not executable.
    pub const NONE: Access = Access(0);
    /// Everything: the identity for composing a path.
    pub const ALL: Access = Access(7);

    /// From raw bits (only the three low bits are kept).
    #[must_use]
    pub const fn from_bits(bits: u8) -> Access {
        Access(bits & 7)
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

    /// Whether instructions may be fetched (no NX on the path).
    #[must_use]
    pub const fn executable(self) -> bool {
        self.0 & 4 != 0
    }

    /// This access with writes taken away.
    #[must_use]
    pub const fn read_only(self) -> Access {
        Access(self.0 & !1)
    }
}

impl BitOr for Access {
    type Output = Access;
    #[inline]
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
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

/// `rw` or `ro`, then `user` or `kernel`, then `nx` if not executable,
/// comma-separated.
impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.writable() { "rw" } else { "ro" })?;
        f.write_str(if self.user() { ",user" } else { ",kernel" })?;
        if !self.executable() {
            f.write_str(",nx")?;
        }
        Ok(())
    }
}
