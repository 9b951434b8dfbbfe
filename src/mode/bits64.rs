//! The bits 8-byte entries share (PAE and x86-64 paging): one place for
//! the layout both formats use, so each mode states only where it
//! differs.

pub(super) const PRESENT: u64 = 1 << 0;
pub(super) const RW: u64 = 1 << 1;
pub(super) const US: u64 = 1 << 2;
/// Page size (a large page) in a directory entry; PAT in a PTE.
pub(super) const PS: u64 = 1 << 7;
/// PAT in a large-page entry.
pub(super) const PAT_LARGE: u64 = super::LARGE_PAT;
/// Execute-disable (with EFER.NXE; reserved without).
pub(super) const NX: u64 = 1 << 63;
/// The address field's widest extent, bits 12..=51.
pub(super) const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
/// Flag bits of an 8-byte entry: everything outside bits 12..=51.
pub(super) const FLAGS: u64 = !ADDR;

/// The most and fewest physical-address bits a mode value accepts.
pub(super) const MAX_PHYS_BITS: u8 = 52;
pub(super) const MIN_PHYS_BITS: u8 = 32;

/// Bits `lo..=hi` set.
pub(super) const fn bits(lo: u32, hi: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// The address of a large page of `1 << shift` bytes, or of a table or
/// 4 KiB page (`shift` 12).
#[inline(always)]
pub(super) const fn frame(raw: u64, shift: u32) -> u64 {
    raw & ADDR & (u64::MAX << shift)
}

/// The access an entry's own RW, US and NX bits grant.
#[inline(always)]
pub(super) const fn access(raw: u64) -> super::Access {
    // RW, US -> bits 0, 1; NX clear -> bit 2.
    super::Access::from_bits((((raw >> 1) & 3) | ((!raw >> 63) << 2)) as u8)
}

/// The flags a rebuilt entry copies: all but the address (a large page
/// keeps its PAT bit, 12).
#[inline]
pub(super) const fn flags(raw: u64, large: bool) -> u64 {
    raw & if large { FLAGS | PAT_LARGE } else { FLAGS }
}

/// A large page's flags as a 4 KiB entry's: PS goes, PAT moves from bit
/// 12 to bit 7.
pub(super) const fn small_flags(large: u64) -> u64 {
    (large & FLAGS & !PS) | if large & PAT_LARGE != 0 { PS } else { 0 }
}

/// An entry naming `pa` (aligned to `1 << shift`, below `2^max_phys`) with
/// `flags` and `set`, or `None`.
pub(super) const fn encode(pa: u64, shift: u32, max_phys: u8, flags: u64, set: u64) -> Option<u64> {
    if pa & ((1 << shift) - 1) != 0 || pa >> max_phys != 0 {
        None
    } else {
        Some(pa | flags | set)
    }
}

/// Loads entry `i` of an 8-byte-entry table.
#[inline(always)]
pub(super) fn load(table: &[u8], i: usize) -> u64 {
    let b = &table[i * 8..i * 8 + 8];
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Stores entry `i` of an 8-byte-entry table.
#[inline]
pub(super) fn store(table: &mut [u8], i: usize, raw: u64) {
    table[i * 8..i * 8 + 8].copy_from_slice(&raw.to_le_bytes());
}

/// `bits` clamped to what a mode value accepts.
pub(super) const fn clamp_phys(bits: u8) -> u8 {
    if bits < MIN_PHYS_BITS {
        MIN_PHYS_BITS
    } else if bits > MAX_PHYS_BITS {
        MAX_PHYS_BITS
    } else {
        bits
    }
}

/// The `PagingMode` methods PAE and x86-64 share word for word (the mode
/// type has a `reserved: u64` field: the bits its PTEs may not set).
macro_rules! entry_methods {
    () => {
        #[inline]
        fn pte_frame(raw: u64) -> PhysAddr {
            PhysAddr(raw & bits64::ADDR)
        }

        #[inline]
        fn pte_reserved_bits(self) -> u64 {
            self.reserved
        }

        #[inline]
        fn load(table: &[u8], i: usize) -> u64 {
            bits64::load(table, i)
        }

        #[inline]
        fn store(table: &mut [u8], i: usize, raw: u64) {
            bits64::store(table, i, raw);
        }

        #[inline]
        fn flags(raw: u64, large: bool) -> u64 {
            bits64::flags(raw, large)
        }

        fn small_flags(large_flags: u64) -> u64 {
            bits64::small_flags(large_flags)
        }
    };
}
pub(super) use entry_methods;
