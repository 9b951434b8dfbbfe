//! PAE paging (CR4.PAE = 1, 32-bit VAs): a 4-entry page-directory-pointer
//! table (the root, 32 bytes, 32-byte aligned) over page directories and
//! page tables of 512 8-byte entries; 2 MiB pages; NX under EFER.NXE.

use super::bits64::{self, NX, PRESENT, PS, RW, US, bits};
use super::{Access, Entry, PagingMode, Sealed};
use crate::addr::{Level, PhysAddr};

/// PDPTE bits the SDM reserves besides the address's upper end: RW, US
/// (1, 2) and 6..=8. Bit 5 (accessed) is reserved on real CPUs too, but
/// emulators (QEMU TCG) set it in every PDPTE they walk and the guest
/// runs on: it is accepted, or no PAE dump from QEMU would walk.
const PDPTE_RESERVED: u64 = RW | US | bits(6, 8);
/// A 2 MiB PDE's bits 13..=20 are reserved.
const LARGE_RESERVED: u64 = bits(13, 20);
/// Flags a rebuilt PDPTE carries: PWT, PCD and bits 9..=11. The accessed
/// bit 5 is accepted when read (emulators set it) but never written: a CPU
/// loading the PDPTEs (MOV to CR3, or KVM's `load_pdptrs`) rejects it.
const PDPTE_FLAGS: u64 = 0x18 | bits(9, 11);

/// PAE paging: 3 levels (PDPT = 3, page directory = 2, page table = 1).
///
/// Options: EFER.NXE (default on; without it bit 63 is reserved) and
/// MAXPHYADDR (default 52, the most lenient; bits from it up to 62 are
/// reserved). A root may be given as CR3 holds it: its low 5 bits are
/// dropped, and it need not be page aligned (Linux without PTI allocates
/// PDPTs as 32-byte objects, several per page). Bits above 31 are kept, as
/// [`I686`](super::I686) keeps them: CR3 cannot hold them in PAE mode, but
/// a caller may name a table there (a 64-bit CR3 read in long mode is not
/// a PAE root: walk it with [`X86_64`](super::X86_64)).
///
/// PDPTEs carry no RW, US or NX: the access of a path is that of its PDE
/// and PTE.
///
/// # Examples
///
/// ```
/// use ptwalk::{mode::Entry, Level, PagingMode, Pae, PhysAddr};
///
/// let m = Pae::default();
/// assert_eq!(m.root_table(PhysAddr(0x1f47_0020 | 0x18)), PhysAddr(0x1f47_0020));
/// assert_eq!(m.decode(0x1ec9_021, Level(3)), Entry::Table(PhysAddr(0x1ec9_000)));
/// assert_eq!(m.decode(0x8000_0000_0060_00e3, Level(2)), Entry::Page(PhysAddr(0x60_0000)));
/// assert!(!m.access(0x8000_0000_0060_00e3, Level(2)).executable());
/// // Without NXE, bit 63 is reserved: the entry maps nothing.
/// assert_eq!(m.with_nxe(false).decode(0x8000_0000_0060_00e3, Level(2)), Entry::Reserved(PhysAddr(0x60_0000)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Pae {
    nxe: bool,
    max_phys_bits: u8,
    /// Bits reserved in PDEs and PTEs: MAXPHYADDR..=62, and 63 without NXE.
    reserved: u64,
}

impl Default for Pae {
    fn default() -> Self {
        Pae::new()
    }
}

impl Pae {
    /// NXE on, MAXPHYADDR 52.
    #[must_use]
    pub const fn new() -> Pae {
        Pae::with(true, bits64::MAX_PHYS_BITS)
    }

    const fn with(nxe: bool, max_phys_bits: u8) -> Pae {
        let m = bits64::clamp_phys(max_phys_bits);
        let high = bits(m as u32, 62);
        Pae {
            nxe,
            max_phys_bits: m,
            reserved: if nxe { high } else { high | NX },
        }
    }

    /// The same mode with EFER.NXE set or clear.
    #[must_use]
    pub const fn with_nxe(self, nxe: bool) -> Pae {
        Pae::with(nxe, self.max_phys_bits)
    }

    /// The same mode with MAXPHYADDR `bits` (clamped to `32..=52`).
    #[must_use]
    pub const fn with_max_phys_bits(self, bits: u8) -> Pae {
        Pae::with(self.nxe, bits)
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

    /// Bits reserved in a PDPTE.
    const fn pdpte_reserved(self) -> u64 {
        PDPTE_RESERVED | bits(self.max_phys_bits as u32, 63)
    }
}

impl Sealed for Pae {}

impl PagingMode for Pae {
    const ENTRY_BYTES: usize = 8;
    const MAX_LEVELS: u8 = 3;
    const CANONICAL: bool = false;
    const PRESENT_WORDS: u64 = PRESENT;

    #[inline]
    fn levels(self) -> u8 {
        3
    }

    #[inline]
    fn va_bits(self) -> u32 {
        32
    }

    #[inline]
    fn index_bits(level: Level) -> u32 {
        if level.0 == 3 { 2 } else { 9 }
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
        let (pa, reserved, page) = match level.0 {
            1 => (bits64::frame(raw, 12), self.reserved, true),
            2 if raw & PS != 0 => (bits64::frame(raw, 21), self.reserved | LARGE_RESERVED, true),
            3 => (bits64::frame(raw, 12), self.pdpte_reserved(), false),
            _ => (bits64::frame(raw, 12), self.reserved, false),
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
    fn table_at(self, raw: u64, level: Level) -> Option<PhysAddr> {
        // `decode`'s `Table`: a PDPTE with none of its reserved bits, or a
        // PDE with PS clear (a large page) and none of the PDE's.
        let reserved = if level.0 == 3 {
            self.pdpte_reserved()
        } else {
            self.reserved | PS
        };
        (raw & (reserved | PRESENT) == PRESENT).then(|| PhysAddr(bits64::frame(raw, 12)))
    }

    #[inline]
    fn access(self, raw: u64, level: Level) -> Access {
        if level.0 == 3 {
            Access::ALL
        } else {
            bits64::access(raw)
        }
    }

    #[inline]
    fn root_table(self, cr3: PhysAddr) -> PhysAddr {
        PhysAddr(cr3.0 & !0x1F)
    }

    bits64::entry_methods!();

    fn default_dir_flags(self, level: Level) -> u64 {
        if level.0 == 3 {
            PRESENT
        } else {
            PRESENT | RW | US
        }
    }

    fn table_entry(self, table: PhysAddr, level: Level, flags: u64) -> Option<u64> {
        let flags = if level.0 == 3 {
            flags & PDPTE_FLAGS
        } else {
            flags & bits64::FLAGS & !PS
        };
        bits64::encode(table.0, 12, self.max_phys_bits, flags, PRESENT)
    }

    fn page_entry(self, pa: PhysAddr, level: Level, flags: u64) -> Option<u64> {
        let m = self.max_phys_bits;
        match level.0 {
            1 => bits64::encode(pa.0, 12, m, flags & bits64::FLAGS, PRESENT),
            2 => bits64::encode(pa.0, 21, m, bits64::flags(flags, true), PS | PRESENT),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(Pae::shift(Level(1)), 12);
        assert_eq!(Pae::shift(Level(2)), 21);
        assert_eq!(Pae::shift(Level(3)), 30);
        assert_eq!(Pae::table_bytes(Level(3)), 32);
        assert_eq!(Pae::table_bytes(Level(2)), 4096);
        assert_eq!(Pae::index(0xC060_3000, Level(3)), 3);
        assert_eq!(Pae::index(0xC060_3000, Level(2)), 3);
        assert_eq!(Pae::index(0xC060_3000, Level(1)), 3);
        assert_eq!(Pae::default().linear(0x1_0000_0000), None);
    }

    #[test]
    fn pdpte_bits() {
        let m = Pae::default();
        // QEMU's accessed bit is accepted; RW, US, PS, NX are not.
        assert_eq!(m.decode(0x5021, Level(3)), Entry::Table(PhysAddr(0x5000)));
        for bad in [0x5003, 0x5005, 0x5081, 0x5041, 0x8000_0000_0000_5001] {
            assert_eq!(
                m.decode(bad, Level(3)),
                Entry::Reserved(PhysAddr(0x5000)),
                "{bad:#x}"
            );
        }
        assert_eq!(m.access(0x5001, Level(3)), Access::ALL);
    }

    #[test]
    fn reserved_bits_follow_the_options() {
        let m = Pae::default();
        assert_eq!(
            m.decode(1 << 62 | 0x7001, Level(1)),
            Entry::Reserved(PhysAddr(0x7000))
        );
        assert_eq!(
            m.decode(1 << 51 | 0x7001, Level(1)),
            Entry::Page(PhysAddr(1 << 51 | 0x7000))
        );
        let m36 = m.with_max_phys_bits(36);
        assert_eq!(
            m36.decode(1 << 36 | 0x7001, Level(1)),
            Entry::Reserved(PhysAddr(1 << 36 | 0x7000))
        );
        assert!(m36.pte_reserved(1 << 36 | 0x7001));
        assert_eq!(
            m.decode(0x0060_2083, Level(2)),
            Entry::Reserved(PhysAddr(0x60_0000))
        );
        assert_eq!(Pae::default().with_max_phys_bits(99).max_phys_bits(), 52);
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let m = Pae::default();
        // Only PWT, PCD and the software bits survive into a PDPTE: not
        // RW, US, nor the accessed bit QEMU leaves in the source.
        let t = m.table_entry(PhysAddr(0x5000), Level(3), 0xE3F).unwrap();
        assert_eq!(t, 0x5E19);
        assert_eq!(m.decode(t, Level(3)), Entry::Table(PhysAddr(0x5000)));
        let p = m
            .page_entry(PhysAddr(0x20_0000), Level(2), NX | 0x1063)
            .unwrap();
        assert_eq!(m.decode(p, Level(2)), Entry::Page(PhysAddr(0x20_0000)));
        assert_eq!(Pae::flags(p, true), NX | 0x10E3);
        assert_eq!(Pae::small_flags(Pae::flags(p, true)), NX | 0xE3);
        assert_eq!(m.page_entry(PhysAddr(0x20_1000), Level(2), 3), None);
        assert_eq!(m.page_entry(PhysAddr(0x4000_0000), Level(3), 3), None);
    }
}
