//! Blocks of 16 eight-byte entries (128 bytes), the scanner's unit in PAE
//! and x86-64 page tables: which entries are present, as a 16-bit mask,
//! and the OR of all 16 (for a block-wide reserved-bit test).
//!
//! One mask answers the three questions the scanner asks of a block (none
//! present: skip it; all present: emit without testing each; some: visit
//! the set bits). On x86-64 hosts it is SSE2 (part of the baseline, so no
//! runtime detection): the low halves of the entries are gathered four at
//! a time, bit 0 shifted to the sign, narrowed to bytes and collected with
//! one `pmovmskb`, 20 instructions for the block where the scalar mask
//! takes about 48. Other hosts use the scalar form, which is also the
//! definition the tests compare with.

/// Bytes of a block of 8-byte entries.
pub(super) const WIDE: usize = 128;

/// The classification of each block of the last page table of 8-byte
/// entries that internal iteration scanned, keyed by the table's bytes
/// (address and length of the scanned part): scanned again, the table is
/// classified once more while its classes are kept, and never after. A
/// follow walk of a real x86-64 Linux guest scans one page table
/// thousands of times in a row (the ESPFIX area: one table reached from
/// every entry of a page directory), most of its work. Only lent tables
/// are scanned this way (a `&[u8]` nobody writes while the walk borrows
/// it), so the same slice means the same entries.
pub(super) struct Masks {
    key: (usize, usize),
    /// Whether `blocks` holds the classes of the table `key` names.
    known: bool,
    /// Per block: its presence mask, and [`DIRTY`] if an entry has
    /// reserved bits.
    blocks: [u32; 32],
}

/// [`Masks`]' mark of a block with reserved bits in some entry.
pub(super) const DIRTY: u32 = 1 << 16;

/// What [`Masks::lookup`] found.
pub(super) enum Memo<'m> {
    /// Not the table scanned last (it is now): classify its blocks.
    Fresh,
    /// The table scanned last: its blocks' classes, known (`true`) or to
    /// be filled in (every slot its blocks have).
    Again((bool, &'m mut [u32; 32])),
}

impl Masks {
    pub(super) const EMPTY: Masks = Masks {
        key: (0, 0),
        known: false,
        blocks: [0; 32],
    };

    /// Whether `rest`, a page table's part that the scan takes whole, is
    /// the table scanned last.
    #[inline(always)]
    pub(super) fn lookup(&mut self, rest: &[u8]) -> Memo<'_> {
        let key = (rest.as_ptr() as usize, rest.len());
        if self.key != key || rest.len() > WIDE * self.blocks.len() || rest.len() % WIDE != 0 {
            self.key = key;
            self.known = false;
            return Memo::Fresh;
        }
        let known = core::mem::replace(&mut self.known, true);
        Memo::Again((known, &mut self.blocks))
    }
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
const N: usize = WIDE / 8;

/// Little-endian word `k` (bytes `8k..8k+8`) of a block of `B` bytes.
#[inline(always)]
pub(super) fn word<const B: usize>(block: &[u8; B], k: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&block[8 * k..8 * k + 8]);
    u64::from_le_bytes(w)
}

/// The block's presence mask (bit `k` set iff entry `k` has bit 0,
/// present, set) and the OR of its entries (unused results cost nothing:
/// the function is inlined).
#[inline(always)]
pub(super) fn classify(block: &[u8; WIDE]) -> (u32, u64) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::classify(block)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        (present_mask_scalar(block), or_all(block))
    }
}

/// Whether any 8-byte entry of `bytes` (a whole number of blocks) is
/// present: the OR of the entries, bit 0. Two instructions per 16 bytes
/// (a load and an OR), where [`classify`] takes 2.5: worth it only over
/// runs expected empty (the scanner asks it of four blocks at once).
#[inline(always)]
pub(super) fn any_present<const B: usize>(bytes: &[u8; B]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::or_all(bytes) & 1 != 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        (0..B / 8).fold(0, |a, k| a | word(bytes, k)) & 1 != 0
    }
}

/// `None` if every 8-byte entry of `bytes` (a whole number of 16-byte
/// pairs) is present with none of the `reserved` bits set, else the OR of
/// the entries (bit 0 clear: none is present). From the AND and the OR
/// of the entries, about three instructions per two entries (a load, an
/// AND, an OR), where [`classify`] takes 2.5 per entry and then an OR:
/// what a scan asks first of a window expected wholly present.
#[inline(always)]
pub(super) fn unless_full<const B: usize>(bytes: &[u8; B], reserved: u64) -> Option<u64> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::unless_full(bytes, reserved)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        unless_full_scalar(bytes, reserved)
    }
}

/// [`unless_full`], one entry at a time.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn unless_full_scalar<const B: usize>(bytes: &[u8; B], reserved: u64) -> Option<u64> {
    let (and, or) = (0..B / 8).fold((u64::MAX, 0), |(a, o), k| {
        let w = word(bytes, k);
        (a & w, o | w)
    });
    (and & 1 == 0 || or & reserved != 0).then_some(or)
}

/// [`classify`] for the four blocks of a window of 64 entries: their
/// masks (block `j`'s in bits `16j..16j + 16`) and the OR of all 64
/// entries, reduced once (four [`classify`] calls reduce four times).
#[inline(always)]
pub(super) fn classify_window(window: &[u8; 4 * WIDE]) -> (u64, u64) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::classify_window(window)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        let mut masks = 0;
        let mut or = 0;
        for (j, block) in window.chunks_exact(WIDE).enumerate() {
            let block: &[u8; WIDE] = block.try_into().unwrap_or(&[0; WIDE]);
            masks |= u64::from(present_mask_scalar(block)) << (16 * j);
            or |= or_all(block);
        }
        (masks, or)
    }
}

/// [`classify`]'s mask, one entry at a time.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
pub(super) fn present_mask_scalar(block: &[u8; WIDE]) -> u32 {
    (0..N).fold(0u32, |m, k| m | (((word(block, k) & 1) as u32) << k))
}

/// The OR of the block's 16 entries.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn or_all(block: &[u8; WIDE]) -> u64 {
    (0..N).fold(0, |a, k| a | word(block, k))
}

// SSE2 intrinsics are `unsafe` to call from a function without
// `#[target_feature(enable = "sse2")]`, and such a function cannot be
// `#[inline(always)]`; the module is compiled only where SSE2 is enabled
// for the whole crate (every x86-64 target), which is what makes each
// call sound. None of them touches memory: the block is read by safe code.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
mod sse2 {
    use core::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_castps_si128, _mm_castsi128_ps,
        _mm_cvtsi128_si64, _mm_movemask_epi8, _mm_or_si128, _mm_packs_epi16, _mm_packs_epi32,
        _mm_set_epi64x, _mm_shuffle_ps, _mm_slli_epi32, _mm_unpackhi_epi64,
    };

    use super::{WIDE, word};

    /// Entries `2k` and `2k + 1` (the compiler merges the two loads into
    /// one 16-byte load).
    #[inline(always)]
    fn pair<const B: usize>(block: &[u8; B], k: usize) -> __m128i {
        let (lo, hi) = (word(block, 2 * k) as i64, word(block, 2 * k + 1) as i64);
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe { _mm_set_epi64x(hi, lo) }
    }

    /// Entries `4k..4k + 4` from two pairs, each reduced to its bit 0
    /// moved to bit 31 of a 32-bit lane.
    #[inline(always)]
    fn quad(a: __m128i, b: __m128i) -> __m128i {
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe {
            // Lanes 0 and 2 of each pair: the entries' low halves, in order.
            let low = _mm_shuffle_ps::<0b10_00_10_00>(_mm_castsi128_ps(a), _mm_castsi128_ps(b));
            _mm_slli_epi32::<31>(_mm_castps_si128(low))
        }
    }

    /// The OR of the 8-byte entries of `bytes` (a multiple of 16 bytes).
    #[inline(always)]
    pub(super) fn or_all<const B: usize>(bytes: &[u8; B]) -> u64 {
        let pair = |k: usize| {
            let (lo, hi) = (word(bytes, 2 * k) as i64, word(bytes, 2 * k + 1) as i64);
            // SAFETY: SSE2 is enabled for the crate (the module's cfg).
            unsafe { _mm_set_epi64x(hi, lo) }
        };
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe {
            let or = (1..B / 16).fold(pair(0), |a, k| _mm_or_si128(a, pair(k)));
            let or = _mm_or_si128(or, _mm_unpackhi_epi64(or, or));
            _mm_cvtsi128_si64(or) as u64
        }
    }

    /// [`super::unless_full`]: the AND and the OR kept in registers,
    /// combined into what must be 0 (an absent entry, a reserved bit) and
    /// reduced once; the OR reduced only if that is not 0.
    #[inline(always)]
    pub(super) fn unless_full<const B: usize>(bytes: &[u8; B], reserved: u64) -> Option<u64> {
        let pair = |k: usize| {
            let (lo, hi) = (word(bytes, 2 * k) as i64, word(bytes, 2 * k + 1) as i64);
            // SAFETY: SSE2 is enabled for the crate (the module's cfg).
            unsafe { _mm_set_epi64x(hi, lo) }
        };
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe {
            let (and, or) = (1..B / 16).fold((pair(0), pair(0)), |(a, o), k| {
                let p = pair(k);
                (_mm_and_si128(a, p), _mm_or_si128(o, p))
            });
            let present = _mm_set_epi64x(1, 1);
            let bad = _mm_or_si128(
                _mm_andnot_si128(and, present),
                _mm_and_si128(or, _mm_set_epi64x(reserved as i64, reserved as i64)),
            );
            let bad = _mm_or_si128(bad, _mm_unpackhi_epi64(bad, bad));
            if _mm_cvtsi128_si64(bad) == 0 {
                return None;
            }
            let or = _mm_or_si128(or, _mm_unpackhi_epi64(or, or));
            Some(_mm_cvtsi128_si64(or) as u64)
        }
    }

    /// The presence mask of a block loaded as 8 pairs.
    #[inline(always)]
    fn mask(p: &[__m128i; 8]) -> u32 {
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe {
            // Signed saturation keeps the sign: 0x8000_0000 narrows to
            // 0x8000, then to 0x80; 0 stays 0. The byte signs are the mask.
            let lo = _mm_packs_epi32(quad(p[0], p[1]), quad(p[2], p[3]));
            let hi = _mm_packs_epi32(quad(p[4], p[5]), quad(p[6], p[7]));
            _mm_movemask_epi8(_mm_packs_epi16(lo, hi)) as u32 & 0xFFFF
        }
    }

    /// [`super::classify_window`]: the OR kept in one register across
    /// the four blocks and reduced once.
    #[inline(always)]
    pub(super) fn classify_window(w: &[u8; 4 * WIDE]) -> (u64, u64) {
        let mut masks = 0;
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe {
            let mut or = _mm_set_epi64x(0, 0);
            for j in 0..4 {
                let p: [__m128i; 8] = core::array::from_fn(|k| pair(w, 8 * j + k));
                masks |= u64::from(mask(&p)) << (16 * j);
                or = p.iter().fold(or, |a, &r| _mm_or_si128(a, r));
            }
            let or = _mm_or_si128(or, _mm_unpackhi_epi64(or, or));
            (masks, _mm_cvtsi128_si64(or) as u64)
        }
    }

    #[inline(always)]
    pub(super) fn classify(block: &[u8; WIDE]) -> (u32, u64) {
        let p: [__m128i; 8] = core::array::from_fn(|k| pair(block, k));
        let mask = mask(&p);
        // SAFETY: SSE2 is enabled for the crate (the module's cfg).
        unsafe {
            let or4 = |a: usize| {
                _mm_or_si128(
                    _mm_or_si128(p[a], p[a + 1]),
                    _mm_or_si128(p[a + 2], p[a + 3]),
                )
            };
            let or = _mm_or_si128(or4(0), or4(4));
            let or = _mm_or_si128(or, _mm_unpackhi_epi64(or, or));
            (mask, _mm_cvtsi128_si64(or) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(entries: [u64; N]) -> [u8; WIDE] {
        let mut b = [0u8; WIDE];
        for (k, e) in entries.iter().enumerate() {
            b[8 * k..8 * k + 8].copy_from_slice(&e.to_le_bytes());
        }
        b
    }

    #[test]
    fn unless_full_is_none_only_for_present_clean_entries() {
        // PAE's bits 52..=62, and x86-64's MAXPHYADDR 40..=51 with NX.
        let masks = [0x7FF0_0000_0000_0000, 0x800F_FF00_0000_0000];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..if cfg!(miri) { 40 } else { 2000 } {
            let reserved = masks[(round / 8) % 2];
            let mut e = [0u64; 4 * N];
            for v in &mut e {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly present and clean (the case the test must not
                // miss), sometimes not.
                *v = match round % 4 {
                    0 => x,
                    _ => (x & !reserved) | 1,
                };
            }
            // One entry in some rounds: absent, or with one reserved bit.
            let k = (x % (4 * N as u64)) as usize;
            match round % 8 {
                1 => e[k] &= !1,
                3 => {
                    // One of the reserved bits.
                    let n = u64::from(reserved.count_ones());
                    let pick = (0..64)
                        .filter(|b| reserved >> b & 1 == 1)
                        .nth((x % n) as usize);
                    e[k] |= 1 << pick.unwrap_or(0);
                }
                _ => {}
            }
            let mut w = [0u8; 4 * WIDE];
            for (k, v) in e.iter().enumerate() {
                w[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
            }
            let or = e.iter().fold(0, |a, v| a | v);
            let full = e.iter().all(|v| v & 1 == 1 && v & reserved == 0);
            assert_eq!(
                unless_full(&w, reserved),
                (!full).then_some(or),
                "round {round}"
            );
            assert_eq!(unless_full_scalar(&w, reserved), (!full).then_some(or));
            assert_eq!(
                unless_full(&w, 0),
                (!e.iter().all(|v| v & 1 == 1)).then_some(or)
            );
        }
        assert_eq!(unless_full(&[0u8; 4 * WIDE], masks[0]), Some(0));
    }

    #[test]
    fn masks_are_kept_for_the_same_bytes_only() {
        let table = [0u8; 4096];
        let mut m = Masks::EMPTY;
        assert!(matches!(m.lookup(&table), Memo::Fresh));
        assert!(matches!(m.lookup(&table), Memo::Again((false, _))));
        assert!(matches!(m.lookup(&table), Memo::Again((true, _))));
        // Another part of the table, or a partial block: fresh.
        assert!(matches!(m.lookup(&table[128..]), Memo::Fresh));
        assert!(matches!(m.lookup(&table), Memo::Fresh));
        assert!(matches!(m.lookup(&table[..100]), Memo::Fresh));
        assert!(matches!(m.lookup(&table[..100]), Memo::Fresh));
    }

    #[test]
    fn mask_is_bit_zero_of_each_entry() {
        // Every high bit set, bit 0 varying: only bit 0 may count.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        // Miri (which CI runs over this module) is slow: fewer rounds.
        for _ in 0..if cfg!(miri) { 40 } else { 2000 } {
            let mut e = [0u64; N];
            for v in &mut e {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x;
            }
            let b = block(e);
            let want = e
                .iter()
                .enumerate()
                .fold(0, |m, (k, v)| m | (((v & 1) as u32) << k));
            let or = e.iter().fold(0, |a, v| a | v);
            assert_eq!(classify(&b), (want, or));
            assert_eq!(any_present(&b), want != 0);
            // A window of four copies, entry 0's presence flipped in two.
            let mut w = [0u8; 4 * WIDE];
            for j in 0..4 {
                w[j * WIDE..(j + 1) * WIDE].copy_from_slice(&b);
                w[j * WIDE] ^= (j as u8) & 1;
            }
            let (masks, wor) = classify_window(&w);
            for j in 0..4 {
                let block: &[u8; WIDE] = w[j * WIDE..(j + 1) * WIDE].try_into().unwrap();
                assert_eq!((masks >> (16 * j)) as u32 & 0xFFFF, classify(block).0);
            }
            assert_eq!(wor, or | 1);
            assert_eq!((present_mask_scalar(&b), or_all(&b)), (want, or));
        }
        assert_eq!(classify(&block([0xFFFF_FFFF_FFFF_FFFE; N])).0, 0);
        assert_eq!(classify(&block([1; N])), (0xFFFF, 1));
        assert_eq!(classify(&block([u64::MAX; N])), (0xFFFF, u64::MAX));
        assert!(!any_present(&block([0xFFFF_FFFF_FFFF_FFFE; N])));
        let mut one = [0; N];
        for k in 0..N {
            one[k] = 1;
            assert!(any_present(&block(one)), "entry {k}");
            one[k] = 0;
        }
    }
}
