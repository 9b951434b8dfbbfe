//! The scanner: the page table (level 1) being scanned, the hot loop of
//! every walk. Blocks of absent entries are skipped whole, blocks of
//! present entries emitted without testing each one; `next` and `fold`
//! both come here.

use core::borrow::Borrow;

use super::block::{
    DIRTY, Masks, Memo, WIDE, any_present, classify, classify_window, unless_full, word,
};
use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::error::FaultReason;
use crate::event::{Fault, Leaf, WalkEvent};
use crate::mem::{BLOCK, Entries, VolatileSlice};
use crate::mode::{Access, PRESENT, PagingMode};

/// Bytes of the entries external iteration classifies at once: four
/// blocks, 64 entries, one bit each in a `u64` (per dense x86-64 leaf:
/// 20.0 instructions a block at a time, 18.2 for two, 17.5 for four; the
/// call and the cursor's loads and stores are paid once per window).
const WINDOW: usize = 4 * WIDE;

/// The page table (level 1) being scanned: the hot loop of every walk.
///
/// Kept apart from the directory frames so that both `next` and `fold`
/// reach it without indexing the stack: `rest` is the part of the table
/// still to scan (whole entries, ending at the range's end), `va` the VA
/// of its first entry (canonical: a page table never spans the
/// non-canonical hole). VAs advance with wrapping adds: past the last page
/// of the x86-64 upper half the next VA is 2^64, and nothing is left to
/// report there. A page table of live memory is scanned from `live`
/// instead (then `rest` is empty), so the frozen path stays a plain slice.
///
/// External iteration over 8-byte entries classifies a [`WINDOW`] of 64
/// entries at a time ([`next_leaf_wide`]): while `taken`, `block` is the
/// last window taken from `rest` (it ends where `rest` begins) and `va`
/// maps its first entry, not `rest`'s; `pending` are its present, clean
/// entries not reported yet (bit `k` for entry `k`) and `dirty` those of
/// a window with reserved bits (each then tested). Internal iteration
/// never sets them.
#[derive(Clone, Copy)]
pub(super) struct PtScan<'a> {
    pub(super) rest: &'a [u8],
    pub(super) live: VolatileSlice<'a>,
    pub(super) va: u64,
    pub(super) block: &'a [u8; WINDOW],
    /// Effective access of the path above the page table.
    pub(super) access: Access,
    pub(super) taken: bool,
    pub(super) pending: u64,
    pub(super) dirty: u64,
}

impl<'a> PtScan<'a> {
    pub(super) const IDLE: PtScan<'static> =
        PtScan::new(&[], VolatileSlice::EMPTY, 0, Access::NONE);

    /// A scan of `rest` (or of `live`), whose first entry maps `va`.
    pub(super) const fn new(
        rest: &'a [u8],
        live: VolatileSlice<'a>,
        va: u64,
        access: Access,
    ) -> Self {
        PtScan {
            rest,
            live,
            va,
            block: &[0; WINDOW],
            access,
            taken: false,
            pending: 0,
            dirty: 0,
        }
    }

    /// Whether entries of `block` are left to report.
    #[inline(always)]
    fn has_pending(&self) -> bool {
        self.pending | self.dirty != 0
    }
}

/// The part of a lent page table that internal iteration scans: its
/// entries (ending at the range's end), the VA of the first, and the
/// access above the table. What the scan loops take, rather than a whole
/// [`PtScan`], whose other fields would then be written for nothing.
#[derive(Clone, Copy)]
pub(super) struct Frozen<'a> {
    pub(super) rest: &'a [u8],
    pub(super) va: u64,
    pub(super) access: Access,
}

impl<'a> PtScan<'a> {
    /// The lent part of this scan.
    #[inline(always)]
    pub(super) fn frozen(&self) -> Frozen<'a> {
        Frozen {
            rest: self.rest,
            va: self.va,
            access: self.access,
        }
    }
}

/// Advances `rest` past the absent entries it starts with, to its first
/// present entry (or its end), a block at a time so that emptiness costs
/// a few instructions per block rather than per entry: 4-byte entries by
/// blocks of 16 (64 bytes), 8-byte entries by windows and blocks
/// ([`skip_to_present`]); then the entries after the last whole block, one
/// at a time here (left to the state machine, they cost a step each, once
/// most of a sparse walk's steps).
#[inline(always)]
pub(super) fn skip_absent<P: PagingMode>(rest: &mut &[u8]) {
    if P::ENTRY_BYTES == 8 {
        *rest = skip_to_present(rest);
    } else {
        while let Some((block, tail)) = rest.split_first_chunk::<BLOCK>() {
            if (0..BLOCK / 8).fold(0, |a, k| a | word(block, k)) & P::PRESENT_WORDS != 0 {
                break;
            }
            *rest = tail;
        }
    }
    while rest.len() >= P::ENTRY_BYTES && P::load(rest, 0) & PRESENT == 0 {
        *rest = &rest[P::ENTRY_BYTES..];
    }
}

/// [`skip_absent`] over any entries (live memory's).
#[inline(always)]
fn skip_absent_in<P: PagingMode, E: Entries>(rest: &mut E, va: &mut u64) {
    while let Some((block, tail)) = rest.split_block() {
        if presence::<P>(block.borrow()).0 {
            return;
        }
        *rest = tail;
        *va = va.wrapping_add(((BLOCK / P::ENTRY_BYTES) as u64) << P::PAGE_SHIFT);
    }
}

/// Whether any, and whether all, of the entries in `block` are present.
#[inline(always)]
fn presence<P: PagingMode>(block: &[u8; BLOCK]) -> (bool, bool) {
    let word = |k: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&block[8 * k..8 * k + 8]);
        u64::from_le_bytes(w) & P::PRESENT_WORDS
    };
    let any = (1..BLOCK / 8).fold(word(0), |a, k| a | word(k));
    if any == 0 {
        return (false, false);
    }
    let all = (1..BLOCK / 8).fold(word(0), |a, k| a & word(k));
    (true, all == P::PRESENT_WORDS)
}

/// Bytes left of the live entries `rest` after skipping the absent
/// entries they start with (by blocks); kept out of the frozen path.
#[cold]
#[inline(never)]
pub(super) fn skip_live_entries<P: PagingMode>(mut rest: VolatileSlice<'_>) -> usize {
    let mut unused_va = 0;
    skip_absent_in::<P, _>(&mut rest, &mut unused_va);
    rest.len()
}

/// [`scan_pt`] over a page table of live memory, kept out of the frozen
/// path's code.
#[cold]
#[inline(never)]
pub(super) fn scan_live_pt<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    pt: PtScan<'_>,
    acc: B,
    g: &mut G,
) -> B {
    scan_entries(mode, space, (pt.live, pt.va, pt.access), acc, g)
}

/// The next leaf (or reserved-entry fault) among the page-table entries `rest` (the first mapping
/// `va`); both advance past it (`rest` to the end if there is none).
#[inline(always)]
pub(super) fn next_leaf<P: PagingMode, E: Entries>(
    mode: P,
    space: SpaceId,
    rest: &mut E,
    va: &mut u64,
    access: Access,
) -> Option<WalkEvent> {
    let (mut r, mut v) = (*rest, *va);
    while let Some((raw, tail)) = r.split_entry::<P>() {
        let this = v;
        r = tail;
        v = v.wrapping_add(1 << P::PAGE_SHIFT);
        if let Some(event) = pte_event(mode, space, this, raw, access) {
            *rest = r;
            *va = v;
            return Some(event);
        }
        skip_absent_in::<P, E>(&mut r, &mut v);
    }
    *rest = r;
    None
}

/// [`next_leaf`] for a frozen page table of 8-byte entries, a [`WINDOW`]
/// of 64 entries at a time: the next of the window's present entries
/// (`pending`, or `dirty` where a reserved bit is set in the window: a
/// mask taken apart bit by bit, 15 instructions per leaf with the
/// consumer's), else the next window with a present entry, classified
/// once ([`refill`]); the entries after the last whole window one at a
/// time.
#[inline(always)]
pub(super) fn next_leaf_wide<P: PagingMode>(
    mode: P,
    space: SpaceId,
    pt: &mut PtScan<'_>,
) -> Option<WalkEvent> {
    loop {
        if let Some(k) = take_lowest(&mut pt.pending) {
            let (raw, va) = (word(pt.block, k), window_va::<P>(pt.va, k));
            return Some(pt_leaf(mode, space, va, P::pte_frame(raw), raw, pt.access));
        }
        if let Some(k) = take_lowest(&mut pt.dirty) {
            let (raw, va) = (word(pt.block, k), window_va::<P>(pt.va, k));
            return Some(present_pte(mode, space, va, raw, pt.access));
        }
        if pt.rest.is_empty() {
            return None; // the table is done (asked at every directory step)
        }
        // Whether this mode value reserves any PTE bit at all (x86-64
        // with NXE and MAXPHYADDR 52 does not): if not, no OR is needed.
        let clean = !mode.pte_reserved(u64::MAX);
        let or = if clean {
            refill::<P, false>(pt)
        } else {
            refill::<P, true>(pt)
        };
        match or {
            None => break,
            Some(or) if !clean && mode.pte_reserved(or) => {
                pt.dirty = core::mem::take(&mut pt.pending);
            }
            Some(_) => {}
        }
    }
    let (mut rest, mut va) = (pt.rest, pt.va);
    while let Some((raw, tail)) = rest.split_first_chunk::<8>() {
        let raw = u64::from_le_bytes(*raw);
        let this = va;
        rest = tail;
        va = va.wrapping_add(1 << P::PAGE_SHIFT);
        if raw & PRESENT != 0 {
            (pt.rest, pt.va) = (rest, va);
            return Some(present_pte(mode, space, this, raw, pt.access));
        }
    }
    pt.rest = rest;
    None
}

/// The lowest set bit of `mask`, cleared.
#[inline(always)]
fn take_lowest(mask: &mut u64) -> Option<usize> {
    let m = *mask;
    if m == 0 {
        return None;
    }
    *mask = m & (m - 1);
    Some(m.trailing_zeros() as usize & 63)
}

/// The VA of entry `k` of the window whose first entry maps `va`.
#[inline(always)]
fn window_va<P: PagingMode>(va: u64, k: usize) -> u64 {
    va.wrapping_add((k as u64) << P::PAGE_SHIFT)
}

/// Takes windows from `pt.rest` up to the first with a present entry,
/// which becomes `pt.block` with its present entries `pending`, and
/// returns the OR of its entries (if `OR`, else 0); `None` if no whole
/// window is left (then `pt.va` maps `pt.rest`'s first entry). Out of
/// line: it runs once per 64 entries at most, and inlined it crowds the
/// per-leaf path.
#[inline(never)]
fn refill<P: PagingMode, const OR: bool>(pt: &mut PtScan<'_>) -> Option<u64> {
    const SPAN: u64 = (WINDOW / 8) as u64;
    let (mut rest, mut va) = (pt.rest, pt.va);
    va = va.wrapping_add((u64::from(pt.taken) * SPAN) << P::PAGE_SHIFT);
    while let Some((window, tail)) = rest.split_first_chunk::<WINDOW>() {
        let (m, or) = classify_window(window);
        if m != 0 {
            (pt.rest, pt.va, pt.block, pt.taken, pt.pending) = (tail, va, window, true, m);
            return Some(if OR { or } else { 0 });
        }
        rest = tail;
        va = va.wrapping_add(SPAN << P::PAGE_SHIFT);
    }
    (pt.rest, pt.va, pt.taken) = (rest, va, false);
    None
}

/// The entries [`next_leaf_wide`] has classified but not reported yet,
/// handed to `g`, and `va` back to mapping `rest`: what internal
/// iteration does first after external.
#[cold]
#[inline(never)]
pub(super) fn drain_block<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    pt: &mut PtScan<'_>,
    mut acc: B,
    g: &mut G,
) -> B {
    while pt.has_pending() {
        if let Some(event) = next_leaf_wide(mode, space, pt) {
            acc = g(acc, event);
        }
    }
    if core::mem::take(&mut pt.taken) {
        pt.va = pt.va.wrapping_add(((WINDOW / 8) as u64) << P::PAGE_SHIFT);
    }
    acc
}

/// `rest` from the block holding its first present entry, at that entry:
/// empty windows of 64 entries skipped by [`skip_windows`], then blocks of
/// 16 by their presence mask ([`classify`]); a last, partial block is
/// left to the caller. By value and inlined, so that the cursor stays in
/// registers.
#[inline(always)]
fn skip_to_present(rest: &[u8]) -> &[u8] {
    let mut rest = skip_windows(rest);
    while let Some((block, tail)) = rest.split_first_chunk::<WIDE>() {
        let m = classify(block).0;
        if m != 0 {
            return &rest[8 * m.trailing_zeros() as usize..];
        }
        rest = tail;
    }
    rest
}

/// `rest` without the empty windows of 64 entries it starts with, tested
/// by [`any_present`]: about 70 instructions a window, against 104 for
/// four blocks' masks.
#[inline(always)]
fn skip_windows(mut rest: &[u8]) -> &[u8] {
    while let Some((window, tail)) = rest.split_first_chunk::<WINDOW>() {
        if any_present(window) {
            break;
        }
        rest = tail;
    }
    rest
}

/// A 4 KiB leaf found in a page table.
#[inline(always)]
fn pt_leaf<P: PagingMode>(
    mode: P,
    space: SpaceId,
    va: u64,
    pa: PhysAddr,
    raw: u64,
    above: Access,
) -> WalkEvent {
    WalkEvent::Leaf(Leaf {
        space,
        va: VirtAddr(va),
        pa,
        entry: raw,
        level: Level::PT,
        size_log2: P::PAGE_SHIFT as u8,
        access: above & mode.access(raw, Level::PT),
    })
}

/// What a present page-table entry reports: its leaf, or a fault if the
/// mode reserves one of its bits (never for i686, whose PTEs have none).
#[inline(always)]
fn present_pte<P: PagingMode>(
    mode: P,
    space: SpaceId,
    va: u64,
    raw: u64,
    above: Access,
) -> WalkEvent {
    if mode.pte_reserved(raw) {
        reserved_pte::<P>(space, va, raw)
    } else {
        pt_leaf(mode, space, va, P::pte_frame(raw), raw, above)
    }
}

/// What any page-table entry reports, if anything: nothing if absent
/// (bit 0, present, in every format), else [`present_pte`] (what the
/// mode's `decode` says at level 1, without its match over levels).
#[inline(always)]
fn pte_event<P: PagingMode>(
    mode: P,
    space: SpaceId,
    va: u64,
    raw: u64,
    above: Access,
) -> Option<WalkEvent> {
    if raw & PRESENT == 0 {
        None
    } else {
        Some(present_pte(mode, space, va, raw, above))
    }
}

/// The fault a PTE with reserved bits raises.
#[cold]
fn reserved_pte<P: PagingMode>(space: SpaceId, va: u64, raw: u64) -> WalkEvent {
    WalkEvent::Fault(Fault {
        space,
        va: VirtAddr(va),
        level: Level::PT,
        pa: P::pte_frame(raw),
        reason: FaultReason::Reserved,
    })
}

/// Internal iteration over a whole page table: every present entry is a
/// leaf handed to `g`. The table is taken a block of entries at a time: a
/// block with no present entry is skipped whole, a block of present
/// entries is emitted without testing each one.
///
/// It repeats [`scan_entries`] for a plain slice on purpose: calling
/// `scan_entries` with `&[u8]` measured 4.77 → 4.83 instructions per leaf
/// on dense1 (internal) and 15.97 → 16.85 (external).
#[inline(always)]
pub(super) fn scan_pt<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    pt: Frozen<'_>,
    masks: &mut Masks,
    mut acc: B,
    g: &mut G,
) -> B {
    if P::ENTRY_BYTES == 8 {
        return scan_pt_wide(mode, space, pt, masks, acc, g);
    }
    let e = P::ENTRY_BYTES;
    let page = 1u64 << P::PAGE_SHIFT;
    let (mut rest, mut va) = (pt.rest, pt.va);
    while let Some((block, tail)) = rest.split_first_chunk::<BLOCK>() {
        match presence::<P>(block) {
            (false, _) => {}
            (true, true) => {
                for k in 0..BLOCK / e {
                    let raw = P::load(block, k);
                    let event = present_pte(
                        mode,
                        space,
                        va.wrapping_add(k as u64 * page),
                        raw,
                        pt.access,
                    );
                    acc = g(acc, event);
                }
            }
            (true, false) => {
                for k in 0..BLOCK / e {
                    let raw = P::load(block, k);
                    if let Some(event) = pte_event(
                        mode,
                        space,
                        va.wrapping_add(k as u64 * page),
                        raw,
                        pt.access,
                    ) {
                        acc = g(acc, event);
                    }
                }
            }
        }
        rest = tail;
        va = va.wrapping_add((BLOCK / e) as u64 * page);
    }
    scan_tail(mode, space, (rest, va, pt.access), acc, g)
}

/// [`scan_pt`] for 8-byte entries: 16 per block (128 bytes), classified
/// by their presence mask ([`classify`]). A block wholly present with
/// no reserved bit in any entry (an OR, needed only where the mode
/// reserves PTE bits) is emitted without testing each entry; in any other
/// block with a present entry only the present entries are visited (the
/// set bits of the mask).
#[inline(always)]
fn scan_pt_wide<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    pt: Frozen<'_>,
    masks: &mut Masks,
    acc: B,
    g: &mut G,
) -> B {
    // Whether this mode value reserves any PTE bit at all (x86-64 with
    // NXE and MAXPHYADDR 52 does not): if not, no entry needs the test.
    if mode.pte_reserved(u64::MAX) {
        scan_blocks::<P, B, G, false>(mode, space, pt, masks, acc, g)
    } else {
        scan_blocks::<P, B, G, true>(mode, space, pt, masks, acc, g)
    }
}

/// [`scan_pt_wide`] for a mode value that reserves PTE bits (`CLEAN`
/// false) or none.
#[inline(always)]
fn scan_blocks<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B, const CLEAN: bool>(
    mode: P,
    space: SpaceId,
    pt: Frozen<'_>,
    masks: &mut Masks,
    mut acc: B,
    g: &mut G,
) -> B {
    const N: usize = WIDE / 8;
    let page = 1u64 << P::PAGE_SHIFT;
    let mut va = pt.va;
    let mut rest = pt.rest;
    let memo = masks.lookup(rest);
    if !CLEAN && matches!(memo, Memo::Fresh) {
        (rest, va, acc) = scan_windows(mode, space, Frozen { rest, va, ..pt }, acc, g);
    }
    let mut blocks = rest.chunks_exact(WIDE);
    match memo {
        Memo::Fresh => {
            for block in &mut blocks {
                let Ok(block) = <&[u8; WIDE]>::try_from(block) else {
                    break; // never: the chunks are exact
                };
                let class = class_of::<P, CLEAN>(mode, block);
                acc =
                    emit_block::<P, B, G, CLEAN>(mode, space, block, class, va, pt.access, acc, g);
                va = va.wrapping_add(N as u64 * page);
            }
        }
        Memo::Again(slots) => {
            return scan_again::<P, B, G, CLEAN>(mode, space, pt, slots, acc, g);
        }
    }
    scan_tail(mode, space, (blocks.remainder(), va, pt.access), acc, g)
}

/// The whole [`WINDOW`]s of `pt` for a mode that reserves PTE bits, each
/// tested first by the AND and OR of its 64 entries ([`unless_full`],
/// about 110 instructions a window, where four blocks' masks and ORs take
/// 168 in the dense `counts()` loop): a
/// window wholly present with no reserved bit is emitted without testing
/// each entry, an absent one skipped, and any other taken a block at a
/// time. Returns what is left after the last whole window, its VA, and
/// the accumulator.
#[inline(always)]
fn scan_windows<'t, P: PagingMode, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    pt: Frozen<'t>,
    mut acc: B,
    g: &mut G,
) -> (&'t [u8], u64, B) {
    const SPAN: usize = WINDOW / 8;
    let page = 1u64 << P::PAGE_SHIFT;
    let reserved = mode.pte_reserved_bits();
    let (mut rest, mut va) = (pt.rest, pt.va);
    while let Some((window, tail)) = rest.split_first_chunk::<WINDOW>() {
        match unless_full(window, reserved) {
            None => {
                // One loop over the 64 entries, not `emit_block` four
                // times: that measured 5.15 -> 5.57 per PAE dense leaf.
                for k in 0..SPAN {
                    let raw = word(window, k);
                    let va = va.wrapping_add(k as u64 * page);
                    acc = g(
                        acc,
                        pt_leaf(mode, space, va, P::pte_frame(raw), raw, pt.access),
                    );
                }
            }
            Some(or) if or & PRESENT != 0 => {
                for (j, block) in window.chunks_exact(WIDE).enumerate() {
                    let Ok(block) = <&[u8; WIDE]>::try_from(block) else {
                        break; // never: the chunks are exact
                    };
                    let class = class_of::<P, false>(mode, block);
                    let va = va.wrapping_add((j * WIDE / 8) as u64 * page);
                    acc = emit_block::<P, B, G, false>(
                        mode, space, block, class, va, pt.access, acc, g,
                    );
                }
            }
            Some(_) => {} // no entry present
        }
        rest = tail;
        va = va.wrapping_add(SPAN as u64 * page);
    }
    (rest, va, acc)
}

/// A block's class: its presence mask, with [`DIRTY`] if the mode
/// reserves a bit some entry has set.
#[inline(always)]
fn class_of<P: PagingMode, const CLEAN: bool>(mode: P, block: &[u8; WIDE]) -> u32 {
    let (present, or) = classify(block);
    if !CLEAN && mode.pte_reserved(or) {
        present | DIRTY
    } else {
        present
    }
}

/// Hands the entries of a block of class `class` to `g`: all of them
/// without a test if all are present and clean, else the present ones.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit_block<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B, const CLEAN: bool>(
    mode: P,
    space: SpaceId,
    block: &[u8; WIDE],
    class: u32,
    va: u64,
    access: Access,
    mut acc: B,
    g: &mut G,
) -> B {
    const ALL: u32 = (1 << (WIDE / 8)) - 1;
    let page = 1u64 << P::PAGE_SHIFT;
    if class == ALL {
        for k in 0..WIDE / 8 {
            let raw = P::load(block, k);
            let va = va.wrapping_add(k as u64 * page);
            acc = g(
                acc,
                pt_leaf(mode, space, va, P::pte_frame(raw), raw, access),
            );
        }
        acc
    } else if class & ALL != 0 {
        mixed_block::<P, B, G, CLEAN>(mode, space, block, class & ALL, va, access, acc, g)
    } else {
        acc
    }
}

/// [`scan_blocks`] for the page table scanned just before (the same
/// bytes: see [`Masks`]): the blocks' classes are filled in the first time
/// again, read back after that. The whole table: a page table's part has
/// at most 32 blocks and no partial one ([`Masks::lookup`]).
#[inline(never)]
fn scan_again<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B, const CLEAN: bool>(
    mode: P,
    space: SpaceId,
    pt: Frozen<'_>,
    (known, slots): (bool, &mut [u32; 32]),
    mut acc: B,
    g: &mut G,
) -> B {
    let mut va = pt.va;
    for (block, slot) in pt.rest.chunks_exact(WIDE).zip(slots) {
        let Ok(block) = <&[u8; WIDE]>::try_from(block) else {
            break; // never: the chunks are exact
        };
        if !known {
            *slot = class_of::<P, CLEAN>(mode, block);
        }
        acc = emit_block::<P, B, G, CLEAN>(mode, space, block, *slot, va, pt.access, acc, g);
        va = va.wrapping_add(((WIDE / 8) as u64) << P::PAGE_SHIFT);
    }
    acc
}

/// The present entries (the set bits of `present`) of a block of 8-byte
/// entries that is neither empty nor wholly present and clean.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mixed_block<P: PagingMode, B, G: FnMut(B, WalkEvent) -> B, const CLEAN: bool>(
    mode: P,
    space: SpaceId,
    block: &[u8; WIDE],
    mut present: u32,
    va: u64,
    access: Access,
    mut acc: B,
    g: &mut G,
) -> B {
    let page = 1u64 << P::PAGE_SHIFT;
    while present != 0 {
        let k = present.trailing_zeros() as usize;
        present &= present - 1;
        let va = va.wrapping_add(k as u64 * page);
        let raw = word(block, k);
        let event = if CLEAN {
            pt_leaf(mode, space, va, P::pte_frame(raw), raw, access)
        } else {
            present_pte(mode, space, va, raw, access)
        };
        acc = g(acc, event);
    }
    acc
}

/// [`scan_pt`] over any entries (live memory's): every present entry is a
/// leaf handed to `g`. The table is taken a block of entries at a time: a
/// block with no present entry is skipped whole, a block of present
/// entries is emitted without testing each one.
#[inline(always)]
fn scan_entries<P: PagingMode, E: Entries, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    (mut rest, mut va, access): (E, u64, Access),
    mut acc: B,
    g: &mut G,
) -> B {
    let e = P::ENTRY_BYTES;
    let page = 1u64 << P::PAGE_SHIFT;
    while let Some((block, tail)) = rest.split_block() {
        let block: &[u8; BLOCK] = block.borrow();
        match presence::<P>(block) {
            (false, _) => {}
            (true, true) => {
                for k in 0..BLOCK / e {
                    let raw = P::load(block, k);
                    let event =
                        present_pte(mode, space, va.wrapping_add(k as u64 * page), raw, access);
                    acc = g(acc, event);
                }
            }
            (true, false) => {
                for k in 0..BLOCK / e {
                    let raw = P::load(block, k);
                    if let Some(event) =
                        pte_event(mode, space, va.wrapping_add(k as u64 * page), raw, access)
                    {
                        acc = g(acc, event);
                    }
                }
            }
        }
        rest = tail;
        va = va.wrapping_add((BLOCK / e) as u64 * page);
    }
    scan_tail(mode, space, (rest, va, access), acc, g)
}

/// The entries after a page table's last whole block (the range ends
/// inside a block), one at a time: what every scan does last.
#[inline(always)]
fn scan_tail<P: PagingMode, E: Entries, B, G: FnMut(B, WalkEvent) -> B>(
    mode: P,
    space: SpaceId,
    (rest, va, access): (E, u64, Access),
    mut acc: B,
    g: &mut G,
) -> B {
    let page = 1u64 << P::PAGE_SHIFT;
    for k in 0..rest.len() / P::ENTRY_BYTES {
        let raw = rest.entry::<P>(k);
        if let Some(event) = pte_event(mode, space, va.wrapping_add(k as u64 * page), raw, access) {
            acc = g(acc, event);
        }
    }
    acc
}
