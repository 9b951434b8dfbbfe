//! 32-bit (non-PAE) x86 paging, "i686": a page directory of 1024 4-byte
//! entries over page tables of 1024 4-byte entries; 4 MiB pages where a
//! directory entry has PS set and PSE is on, with PSE-36 high address bits.

use super::{Access, Entry, PagingMode, Sealed};
use crate::addr::{Level, PhysAddr};

const PRESENT: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const TABLE_ADDR: u64 = 0xFFFF_F000;
const LARGE_ADDR_LOW: u64 = 0xFFC0_0000;
/// PSE-36: PDE bits 13..=20 hold physical-address bits 32..=39.
const LARGE_ADDR_HIGH: u64 = 0xFF << 13;
/// Bit 21 of a 4 MiB PDE is reserved (Intel SDM vol. 3A, table 4-4): the
/// entry translates nothing. MAXPHYADDR is taken as 40, the most lenient
/// PSE-36 allows, so bits 13..=20 are never reserved here.
const LARGE_RESERVED: u64 = 1 << 21;

/// 32-bit x86 paging (CR4.PAE = 0).
///
/// `pse` is CR4.PSE: when set (the default), a page-directory entry with
/// PS (bit 7) maps a 4 MiB page (unless its reserved bit 21 is set: then
/// it is [`Entry::Reserved`] and translates nothing); when clear, PS is
/// ignored and every present directory entry points at a page table. A
/// root may be given as CR3 holds it: bits 0..=11 (PWT, PCD) are dropped.
///
/// # Examples
///
/// ```
/// use ptwalk::{mode::Entry, I686, Level, PagingMode, PhysAddr};
///
/// let pde = 0x0040_0083 | (0x12 << 13); // 4 MiB page, PSE-36 bits 0x12
/// assert_eq!(I686::default().decode(pde, Level(2)), Entry::Page(PhysAddr(0x12_0040_0000)));
/// assert_eq!(I686 { pse: false }.decode(pde, Level(2)), Entry::Table(PhysAddr(0x0042_4000)));
/// // Reserved bit 21 set: the hardware faults, nothing is mapped.
/// assert_eq!(I686::default().decode(0x0060_0083, Level(2)), Entry::Reserved(PhysAddr(0x0040_0000)));
/// assert_eq!(I686::default().root_table(PhysAddr(0x1018)), PhysAddr(0x1000));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct I686 {
    /// CR4.PSE: 4 MiB pages.
    pub pse: bool,
}

impl Default for I686 {
    fn default() -> Self {
        I686 { pse: true }
    }
}

impl Sealed for I686 {}

impl PagingMode for I686 {
    const ENTRY_BYTES: usize = 4;
    const MAX_LEVELS: u8 = 2;
    const CANONICAL: bool = false;
    const PRESENT_WORDS: u64 = PRESENT | (PRESENT << 32);

    #[inline]
    fn levels(self) -> u8 {
        2
    }

    #[inline]
    fn va_bits(self) -> u32 {
        32
    }

    #[inline]
    fn index_bits(_level: Level) -> u32 {
        10
    }

    #[inline]
    fn shift(level: Level) -> u32 {
        // Level 1 entries map 4 KiB (12 bits), level 2 entries 4 MiB.
        2 + 10 * u32::from(level.0)
    }

    #[inline]
    fn decode(self, raw: u64, level: Level) -> Entry {
        if raw & PRESENT == 0 {
            Entry::Absent
        } else if level.0 == 1 {
            Entry::Page(Self::pte_frame(raw))
        } else if self.pse && raw & PS != 0 {
            let pa = PhysAddr((raw & LARGE_ADDR_LOW) | ((raw & LARGE_ADDR_HIGH) << (32 - 13)));
            if raw & LARGE_RESERVED != 0 {
                Entry::Reserved(pa)
            } else {
                Entry::Page(pa)
            }
        } else {
            Entry::Table(PhysAddr(raw & TABLE_ADDR))
        }
    }

    #[inline]
    fn root_table(self, cr3: PhysAddr) -> PhysAddr {
        // Only the flag bits go: a root above 4 GiB (not something CR3 can
        // hold, but a physical address a caller may name) is kept as given.
        PhysAddr(cr3.0 & !0xFFF)
    }

    #[inline]
    fn pte_frame(raw: u64) -> PhysAddr {
        PhysAddr(raw & TABLE_ADDR)
    }

    #[inline]
    fn pte_reserved_bits(self) -> u64 {
        0
    }

    #[inline]
    fn access(self, raw: u64, _level: Level) -> Access {
        // 32-bit paging has no NX: every page is executable.
        Access::from_bits((((raw & (RW | US)) >> 1) | 4) as u8)
    }

    #[inline]
    fn flags(raw: u64, large: bool) -> u64 {
        // A large page's bit 12 is PAT; bits 13..=21 are address.
        raw & if large { 0x1FFF } else { 0xFFF }
    }

    fn small_flags(large_flags: u64) -> u64 {
        // PS (bit 7) goes; PAT moves from bit 12 to bit 7.
        (large_flags & 0xF7F) | if large_flags & 0x1000 != 0 { PS } else { 0 }
    }

    fn default_dir_flags(self, _level: Level) -> u64 {
        PRESENT | RW | US
    }

    fn table_entry(self, table: PhysAddr, _level: Level, flags: u64) -> Option<u64> {
        (table.0 & !TABLE_ADDR == 0).then_some(table.0 | (flags & 0xFFF & !PS) | PRESENT)
    }

    fn page_entry(self, pa: PhysAddr, level: Level, flags: u64) -> Option<u64> {
        match level.0 {
            1 => (pa.0 & !TABLE_ADDR == 0).then_some(pa.0 | (flags & 0xFFF) | PRESENT),
            2 if self.pse && pa.0 & 0x3F_FFFF == 0 && pa.0 >> 40 == 0 => Some(
                (pa.0 & LARGE_ADDR_LOW)
                    | ((pa.0 >> 32) << 13)
                    | (flags & 0x1FFF & !LARGE_ADDR_HIGH)
                    | PS
                    | PRESENT,
            ),
            _ => None,
        }
    }

    #[inline]
    fn store(table: &mut [u8], i: usize, raw: u64) {
        table[i * 4..i * 4 + 4].copy_from_slice(&(raw as u32).to_le_bytes());
    }

    #[inline]
    fn load(table: &[u8], i: usize) -> u64 {
        let b = &table[i * 4..i * 4 + 4];
        u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(I686::shift(Level(1)), 12);
        assert_eq!(I686::shift(Level(2)), 22);
        assert_eq!(I686::entries(Level(2)), 1024);
        assert_eq!(I686::table_bytes(Level(1)), 4096);
        assert_eq!(I686::index(0xC040_3000, Level(2)), 0x301);
        assert_eq!(I686::index(0xC040_3000, Level(1)), 3);
    }

    #[test]
    fn pte_decodes_to_page() {
        let m = I686::default();
        assert_eq!(
            m.decode(0x1234_5067, Level(1)),
            Entry::Page(PhysAddr(0x1234_5000))
        );
        // PS/PAT in a PTE is not a large page.
        assert_eq!(
            m.decode(0x1234_5087, Level(1)),
            Entry::Page(PhysAddr(0x1234_5000))
        );
        assert_eq!(m.decode(0x1234_5066, Level(1)), Entry::Absent);
    }

    #[test]
    fn pde_decodes_table_or_large_page() {
        let m = I686::default();
        assert_eq!(
            m.decode(0x0000_3027, Level(2)),
            Entry::Table(PhysAddr(0x3000))
        );
        assert_eq!(
            m.decode(0xFFC0_0083, Level(2)),
            Entry::Page(PhysAddr(0xFFC0_0000))
        );
        // PSE-36: bits 13..=20 are PA bits 32..=39; bit 12 (PAT) is not address.
        let pde = 0x0040_0000 | (0xFF << 13) | (1 << 12) | 0x83;
        assert_eq!(
            m.decode(pde, Level(2)),
            Entry::Page(PhysAddr(0xFF_0040_0000))
        );
        assert_eq!(
            I686 { pse: false }.decode(0xFFC0_0083, Level(2)),
            Entry::Table(PhysAddr(0xFFC0_0000))
        );
        assert_eq!(m.decode(0xFFC0_0082, Level(2)), Entry::Absent);
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let m = I686::default();
        let t = m.table_entry(PhysAddr(0x5000), Level(2), 0x27).unwrap();
        assert_eq!(
            (m.decode(t, Level(2)), t & 0xFFF),
            (Entry::Table(PhysAddr(0x5000)), 0x27)
        );
        assert_eq!(m.table_entry(PhysAddr(0x5001), Level(2), 0x27), None);
        assert_eq!(m.table_entry(PhysAddr(0x1_0000_0000), Level(2), 0x27), None);
        let p = m.page_entry(PhysAddr(0x7000), Level(1), 0x203).unwrap();
        assert_eq!(
            (m.decode(p, Level(1)), I686::flags(p, false)),
            (Entry::Page(PhysAddr(0x7000)), 0x203)
        );
        let big = m
            .page_entry(PhysAddr(0xAB_0040_0000), Level(2), 0x1003)
            .unwrap();
        assert_eq!(
            m.decode(big, Level(2)),
            Entry::Page(PhysAddr(0xAB_0040_0000))
        );
        assert_eq!(I686::flags(big, true), 0x1083);
        assert_eq!(m.page_entry(PhysAddr(0x0040_1000), Level(2), 3), None);
        assert_eq!(m.page_entry(PhysAddr(1 << 40), Level(2), 3), None);
        assert_eq!(
            I686 { pse: false }.page_entry(PhysAddr(0x40_0000), Level(2), 3),
            None
        );
        let mut table = [0u8; 8];
        I686::store(&mut table, 1, 0xDEAD_BEEF);
        assert_eq!(I686::load(&table, 1), 0xDEAD_BEEF);
    }

    #[test]
    fn access_bits() {
        let m = I686::default();
        let x = Access::EXECUTE;
        assert_eq!(m.access(0x7, Level(1)), Access::ALL);
        assert_eq!(m.access(0x5, Level(1)), Access::USER | x);
        assert_eq!(m.access(0x3, Level(2)), Access::WRITABLE | x);
        assert_eq!(m.access(0x201, Level(1)), x);
        // No NX in 32-bit paging: bit 31 is address.
        assert_eq!(m.access(0x8000_0001, Level(1)), x);
    }
}
