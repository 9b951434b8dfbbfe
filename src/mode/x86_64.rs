//! 4-level and 5-level x86-64 paging (IA-32e): tables of 512 8-byte
//! entries, 2 MiB pages in page directories, 1 GiB pages in PDPTs, NX
//! under EFER.NXE, canonical 48- or 57-bit VAs.

use super::bits64::{self, NX, PRESENT, PS, RW, US, bits};
use super::{Access, Entry, PagingMode, Sealed};
use crate::addr::{Level, PhysAddr};

/// A 2 MiB PDE's bits 13..=20 are reserved.
const RESERVED_2M: u64 = bits(13, 20);
/// A 1 GiB PDPTE's bits 13..=29 are reserved.
const RESERVED_1G: u64 = bits(13, 29);

/// x86-64 paging: PML4 = 4 (PML5 = 5 with LA57), PDPT = 3, page directory
/// = 2, page table = 1.
///
/// Options: CR4.LA57 (5 levels, 57-bit VAs), EFER.NXE (default on;
/// without it bit 63 is reserved) and MAXPHYADDR (default 52, the most
/// lenient; address bits from it up to 51 are reserved). PS is reserved in
/// PML4 and PML5 entries. VAs are canonical: the walk reports the upper
/// half as `0xffff_8000_0000_0000` and up (`0xff00_0000_0000_0000` with
/// LA57). A root may be given as CR3 holds it: the PCID or flag bits
/// (0..=11) and bits 52..=63 are dropped.
///
/// # Examples
///
/// ```
/// use ptwalk::{mode::Entry, Level, PagingMode, PhysAddr, X86_64};
///
/// let m = X86_64::default();
/// assert_eq!((m.levels(), m.va_bits()), (4, 48));
/// assert_eq!(m.root_table(PhysAddr(0x8000_0000_0123_4005)), PhysAddr(0x123_4000));
/// assert_eq!(m.canonical(0x8880_0000_0000), 0xffff_8880_0000_0000);
/// assert_eq!(m.decode(0x4000_00e3, Level(3)), Entry::Page(PhysAddr(0x4000_0000)));
/// // PS in a PML4 entry is reserved.
/// assert_eq!(m.decode(0x5083, Level(4)), Entry::Reserved(PhysAddr(0x5000)));
/// assert_eq!(X86_64::LA57.levels(), 5);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct X86_64 {
    la57: bool,
    nxe: bool,
    max_phys_bits: u8,
    /// Bits reserved in every entry: MAXPHYADDR..=51, and 63 without NXE.
    reserved: u64,
}

impl Default for X86_64 {
    fn default() -> Self {
        X86_64::new()
    }
}

impl X86_64 {
    /// 5-level paging, NXE on, MAXPHYADDR 52.
    pub const LA57: X86_64 = X86_64::with(true, true, bits64::MAX_PHYS_BITS);

    /// 4-level paging, NXE on, MAXPHYADDR 52.
    #[must_use]
    pub const fn new() -> X86_64 {
        X86_64::with(false, true, bits64::MAX_PHYS_BITS)
    }

    const fn with(la57: bool, nxe: bool, max_phys_bits: u8) -> X86_64 {
        let m = bits64::clamp_phys(max_phys_bits);
        let high = if m < 52 { bits(m as u32, 51) } else { 0 };
        X86_64 {
            la57,
            nxe,
            max_phys_bits: m,
            reserved: if nxe { high } else { high | NX },
        }
    }

    /// The same mode with CR4.LA57 set (5 levels) or clear (4).
    #[must_use]
    pub const fn with_la57(self, la57: bool) -> X86_64 {
        X86_64::with(la57, self.nxe, self.max_phys_bits)
    }

    /// The same mode with EFER.NXE set or clear.
    #[must_use]
    pub const fn with_nxe(self, nxe: bool) -> X86_64 {
        X86_64::with(self.la57, nxe, self.max_phys_bits)
    }

    /// The same mode with MAXPHYADDR `bits` (clamped to `32..=52`).
    #[must_use]
    pub const fn with_max_phys_bits(self, bits: u8) -> X86_64 {
        X86_64::with(self.la57, self.nxe, bits)
    }

    /// CR4.LA57.
    #[must_use]
    pub const fn la57(self) -> bool {
        self.la57
    }

    /// EFER.NXE.
    #[must_use]
    pub const fn nxe(self) -> bool {
        self.nxe
    }

    /// MAXPHYADDR.
    #[must_use]
    pub const fn max_phys_bits(self) -> u8 {
        self.max_phys_bits
    }
}

impl Sealed for X86_64 {}

impl PagingMode for X86_64 {
    const ENTRY_BYTES: usize = 8;
    const MAX_LEVELS: u8 = 5;
    const CANONICAL: bool = true;
    const PRESENT_WORDS: u64 = PRESENT;

    #[inline]
    fn levels(self) -> u8 {
        if self.la57 { 5 } else { 4 }
    }

    #[inline]
    fn va_bits(self) -> u32 {
        if self.la57 { 57 } else { 48 }
    }

    #[inline]
    fn index_bits(_level: Level) -> u32 {
        9
    }

    #[inline]
    fn shift(level: Level) -> u32 {
        3 + 9 * u32::from(level.0)
    }

    #[inline]
    fn decode(self, raw: u64, level: Level) -> Entry {
        if raw & PRESENT == 0 {
            return Entry::Absent;
        }
        let large = raw & PS != 0;
        let (pa, reserved, page) = match level.0 {
            1 => (bits64::frame(raw, 12), self.reserved, true),
            2 if large => (bits64::frame(raw, 21), self.reserved | RESERVED_2M, true),
            3 if large => (bits64::frame(raw, 30), self.reserved | RESERVED_1G, true),
            2 | 3 => (bits64::frame(raw, 12), self.reserved, false),
            // PML4 and PML5 entries: PS is reserved.
            _ => (bits64::frame(raw, 12), self.reserved | PS, false),
        };
        if raw & reserved != 0 {
            Entry::Reserved(PhysAddr(pa))
        } else if page {
            Entry::Page(PhysAddr(pa))
        } else {
            Entry::Table(PhysAddr(pa))
        }
    }

    #[inline]
    fn addressable(self, va: u64) -> bool {
        // Canonical: the VA plus half the space lies below the space's
        // size (one add and compare; a loop hoists both constants).
        let (half, size) = if self.la57 {
            (1 << 56, 1 << 57)
        } else {
            (1 << 47, 1 << 48)
        };
        va.wrapping_add(half) < size
    }

    #[inline]
    fn table_at(self, raw: u64, _level: Level) -> Option<PhysAddr> {
        // Present, PS clear (a large page at levels 2 and 3, reserved
        // above), no reserved bit: `decode`'s `Table` at every level.
        (raw & (self.reserved | PS | PRESENT) == PRESENT).then(|| PhysAddr(bits64::frame(raw, 12)))
    }

    #[inline]
    fn access(self, raw: u64, _level: Level) -> Access {
        bits64::access(raw)
    }

    #[inline]
    fn root_table(self, cr3: PhysAddr) -> PhysAddr {
        PhysAddr(cr3.0 & bits64::ADDR)
    }

    bits64::entry_methods!();

    fn default_dir_flags(self, _level: Level) -> u64 {
        PRESENT | RW | US
    }

    fn table_entry(self, table: PhysAddr, _level: Level, flags: u64) -> Option<u64> {
        let flags = flags & bits64::FLAGS & !PS;
        bits64::encode(table.0, 12, self.max_phys_bits, flags, PRESENT)
    }

    fn page_entry(self, pa: PhysAddr, level: Level, flags: u64) -> Option<u64> {
        let m = self.max_phys_bits;
        let large = bits64::flags(flags, true);
        match level.0 {
            1 => bits64::encode(pa.0, 12, m, flags & bits64::FLAGS, PRESENT),
            2 => bits64::encode(pa.0, 21, m, large, PS | PRESENT),
            3 => bits64::encode(pa.0, 30, m, large, PS | PRESENT),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(X86_64::shift(Level(4)), 39);
        assert_eq!(X86_64::shift(Level(5)), 48);
        assert_eq!(X86_64::table_bytes(Level(4)), 4096);
        let va = 0xffff_8880_0123_4000;
        assert_eq!(X86_64::index(va, Level(4)), 0x111);
        assert_eq!(X86_64::index(va, Level(1)), 0x34);
        let m = X86_64::default();
        assert_eq!(m.linear(va), Some(0x8880_0123_4000));
        assert_eq!(m.linear(0x8000_0000_0000), None);
        assert_eq!(m.linear(0x7fff_ffff_f000), Some(0x7fff_ffff_f000));
        assert_eq!(m.linear_bound(0x8000_0000_0000), 0x8000_0000_0000);
        assert_eq!(m.linear_bound(u64::MAX), (1 << 48) - 1);
        assert_eq!(m.linear_bound(0xffff_8000_0000_0000), 0x8000_0000_0000);
        let l = X86_64::LA57;
        assert_eq!(l.canonical(1 << 56), 0xff00_0000_0000_0000);
        assert_eq!(l.linear(0xff11_0000_0000_0000), Some(0x111_0000_0000_0000));
        assert_eq!(l.linear(0xffff_8880_0000_0000), Some(0x1ff_8880_0000_0000));
    }

    #[test]
    fn reserved_bits_follow_the_options() {
        let m = X86_64::default();
        // Bits 52..=62 are ignored (software, protection keys).
        assert_eq!(
            m.decode(0x7FF0_0000_0000_7001, Level(1)),
            Entry::Page(PhysAddr(0x7000))
        );
        assert_eq!(
            m.with_nxe(false).decode(NX | 0x7001, Level(1)),
            Entry::Reserved(PhysAddr(0x7000))
        );
        assert!(m.with_nxe(false).pte_reserved(NX | 0x7001));
        let m39 = m.with_max_phys_bits(39);
        assert_eq!(
            m39.decode(1 << 39 | 0x7001, Level(2)),
            Entry::Reserved(PhysAddr(1 << 39 | 0x7000))
        );
        assert_eq!(
            m.decode(0x4000_2083, Level(3)),
            Entry::Reserved(PhysAddr(0x4000_0000))
        );
        assert_eq!(
            m.decode(0x20_2083, Level(2)),
            Entry::Reserved(PhysAddr(0x20_0000))
        );
        assert_eq!(
            X86_64::LA57.decode(0x5083, Level(5)),
            Entry::Reserved(PhysAddr(0x5000))
        );
        assert_eq!(
            X86_64::LA57.decode(0x5083, Level(4)),
            Entry::Reserved(PhysAddr(0x5000))
        );
    }

    #[test]
    fn nx_and_access() {
        let m = X86_64::default();
        assert_eq!(m.access(0x7, Level(4)), Access::ALL);
        assert_eq!(
            m.access(NX | 0x7, Level(4)),
            Access::WRITABLE | Access::USER
        );
        assert_eq!(m.access(NX | 0x1, Level(1)), Access::NONE);
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let m = X86_64::default();
        let big = m
            .page_entry(PhysAddr(0x4000_0000), Level(3), NX | 0x1063)
            .unwrap();
        assert_eq!(m.decode(big, Level(3)), Entry::Page(PhysAddr(0x4000_0000)));
        assert_eq!(X86_64::flags(big, true), NX | 0x10E3);
        assert_eq!(m.page_entry(PhysAddr(0x20_0000), Level(3), 3), None);
        assert_eq!(m.page_entry(PhysAddr(0x20_0000), Level(4), 3), None);
        let t = m
            .table_entry(PhysAddr(0x9000), Level(4), NX | 0xE7)
            .unwrap();
        assert_eq!(t, NX | 0x9067);
        assert_eq!(
            m.with_max_phys_bits(40)
                .table_entry(PhysAddr(1 << 40), Level(2), 7),
            None
        );
    }
}
