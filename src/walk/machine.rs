//! The state machine: one step at a time over directory entries (page
//! tables are the scanner's), pushing a frame per table descended, and
//! the iterator over it.

use core::iter::FusedIterator;

use super::block::Masks;
use super::scan::{
    PtScan, drain_block, next_leaf, next_leaf_wide, scan_live_pt, scan_pt, skip_absent,
    skip_live_entries,
};
use super::{AliasPolicy, Frame, Walk};
use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::error::{FaultReason, MemError};
use crate::event::{Aliasing, Fault, Invalid, Leaf, WalkEvent};
use crate::mem::{Entries, PhysMem, Table, TableView, VolatileSlice};
use crate::mode::{Access, Entry, PagingMode, step};
use crate::owners::{Claim, Owners};
use crate::resolve::{Resolution, resolve};

/// What one step of the state machine produced.
pub(super) enum Step {
    Event(WalkEvent),
    Continue,
    Done,
}

impl<'a, P: PagingMode, M: PhysMem + ?Sized, O: Owners, F: AliasPolicy<'a>> Walk<'a, P, M, O, F> {
    /// Pushes a frame scanning the entries of `table` (at `level`, mapping
    /// from `base`) that intersect the range.
    #[inline]
    fn push(&mut self, table: Table<'a>, level: Level, base: u64, access: Access, followed: bool) {
        let shift = P::shift(level);
        let n = P::entries(level) as u64;
        let first = self.start.saturating_sub(base) >> shift;
        let span = self.end - base;
        let last = if (span >> shift) >= n {
            n
        } else {
            (span + (1 << shift) - 1) >> shift
        };
        if level == Level::PT {
            let e = P::ENTRY_BYTES;
            let (start, end) = (first as usize * e, last as usize * e);
            let (rest, live) = match table.view() {
                TableView::Bytes(t) => (&t[start..end], VolatileSlice::EMPTY),
                TableView::Volatile(v) => (
                    &[][..],
                    v.subslice(start, end - start)
                        .unwrap_or(VolatileSlice::EMPTY),
                ),
            };
            self.pt = PtScan::new(
                rest,
                live,
                self.mode.canonical(base + (first << shift)),
                access,
            );
            return;
        }
        // Directory frames are levels 2..=levels, and levels <= MAX_LEVELS
        // (checked for every mode in `facts`), so the stack cannot be full.
        debug_assert!(!self.stack.is_full());
        let _ = self.stack.try_push(Frame {
            table,
            base,
            next: first as u32,
            end: last as u32,
            level,
            access,
            followed,
        });
    }

    /// Starts the next space; `Done` when there is none.
    #[cold]
    fn enter_next_space(&mut self) -> Step {
        if !self.started {
            self.started = true;
            self.owners.clear();
        }
        let s = self.next_space;
        let Some(root) = self.roots.get(s as usize) else {
            return Step::Done;
        };
        if self.start >= self.end {
            self.next_space = u32::MAX;
            return Step::Done;
        }
        self.next_space = s + 1;
        self.space = s;
        let level = self.mode.root_level();
        let root = self.mode.root_table(root);
        match self.mem.table(root, P::table_bytes(level)) {
            Ok(t) => {
                self.push(t, level, 0, Access::ALL, false);
                Step::Continue
            }
            Err(e) => Step::Event(self.fault(0, level, root, e.into())),
        }
    }

    /// A fault at linear VA `va`.
    #[inline]
    pub(super) fn fault(
        &self,
        va: u64,
        level: Level,
        pa: PhysAddr,
        reason: FaultReason,
    ) -> WalkEvent {
        WalkEvent::Fault(Fault {
            space: SpaceId(self.space),
            va: VirtAddr(self.mode.canonical(va)),
            level,
            pa,
            reason,
        })
    }

    #[inline]
    pub(super) fn table(
        &self,
        followed: bool,
        pa: PhysAddr,
        len: usize,
    ) -> Result<Table<'a>, MemError> {
        match (followed, self.policy.follow_in()) {
            (true, Some(r)) => r.table(pa, len),
            _ => self.mem.table(pa, len),
        }
    }

    /// [`descend_here`](Self::descend_here) out of line: i686's external
    /// walk measured 18.2 instructions per dense leaf this way, 20.2 with
    /// it inlined into `step`.
    #[inline(never)]
    fn descend(
        &mut self,
        raw: u64,
        level: Level,
        va: u64,
        table: PhysAddr,
        above: Access,
        followed: bool,
    ) -> Step {
        self.descend_here(raw, level, va, table, above, followed)
    }

    /// Handles a present table entry (at `level`, mapping linear VA `va`)
    /// pointing at `table`: descend, report an alias, follow it, or fault.
    /// Inlined into `step` for 8-byte entries (PAE kshared16's external
    /// references walk, an alias per 43 leaves: 24.4 -> 22.5 per leaf).
    #[inline(always)]
    fn descend_here(
        &mut self,
        raw: u64,
        level: Level,
        va: u64,
        table: PhysAddr,
        above: Access,
        followed: bool,
    ) -> Step {
        let child = Level(level.0 - 1);
        let bytes = P::table_bytes(child);
        // An unreadable table is never owned: check before claiming.
        let t = match self.table(followed, table, bytes) {
            Ok(t) => t,
            Err(e) => return Step::Event(self.fault(va, child, table, e.into())),
        };
        if followed {
            self.push(t, child, va, above & self.mode.access(raw, level), true);
            return Step::Continue;
        }
        let space = SpaceId(self.space);
        let canonical = VirtAddr(self.mode.canonical(va));
        match self.owners.claim(table, child, space, canonical) {
            Claim::New => {
                self.push(t, child, va, above & self.mode.access(raw, level), false);
                Step::Continue
            }
            Claim::Full => Step::Event(self.fault(va, child, table, FaultReason::IndexFull)),
            // Followed in the frozen memory the walk reads, an alias
            // resolves to the table its entry names: descend `t` itself.
            Claim::Owned { .. } if self.policy.follows_walked_memory() && self.mem.frozen() => {
                self.push(t, child, va, above & self.mode.access(raw, level), true);
                Step::Continue
            }
            Claim::Owned {
                space: owner,
                va: owner_va,
            } => self.on_alias(raw, level, va, table, above, owner, owner_va),
        }
    }

    #[cold]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_alias(
        &mut self,
        raw: u64,
        level: Level,
        va: u64,
        table: PhysAddr,
        above: Access,
        owner: SpaceId,
        owner_va: VirtAddr,
    ) -> Step {
        let size_log2 = P::shift(level) as u8;
        let space = SpaceId(self.space);
        let canonical = VirtAddr(self.mode.canonical(va));
        let Some(r) = self.policy.follow_in() else {
            return Step::Event(WalkEvent::Aliasing(Aliasing {
                space,
                va: canonical,
                owner,
                owner_va,
                table,
                entry: raw,
                level,
                size_log2,
            }));
        };
        let Some(owner_root) = self.roots.get(owner.index()) else {
            return Step::Continue; // an index never names a space we lack
        };
        match resolve(self.mode, r, owner_root, owner_va, level) {
            Resolution::Table(resolved) => {
                let child = Level(level.0 - 1);
                match r.table(resolved, P::table_bytes(child)) {
                    Ok(t) => {
                        self.push(t, child, va, above & self.mode.access(raw, level), true);
                        Step::Continue
                    }
                    Err(e) => Step::Event(self.fault(va, child, resolved, e.into())),
                }
            }
            Resolution::Invalid => Step::Event(WalkEvent::Invalid(Invalid {
                space,
                va: canonical,
                level,
                size_log2,
            })),
            Resolution::Fault { level, pa, reason } => {
                Step::Event(self.fault(va, level, pa, reason))
            }
        }
    }

    /// Looks at directory entries up to the first that yields something
    /// (an event, or a table pushed), popping finished directories on the
    /// way, or starts a space. Page tables are scanned by `next_pt_leaf`
    /// and `scan_pt`, never here. Absent runs and finished directories
    /// loop here rather than return: a sparse walk is mostly those.
    #[inline]
    fn step(&mut self) -> Step {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return self.enter_next_space();
            };
            if top.next >= top.end {
                self.stack.pop();
                continue;
            }
            let i = top.next as usize;
            top.next += 1;
            let level = top.level;
            let raw = top.table.load::<P>(i);
            let va = top.base + ((i as u64) << P::shift(level));
            // 8-byte table entries by one mask and compare first (PAE
            // kshared16's external references walk, an alias per 43
            // leaves: 22.5 -> 22.3 per leaf). Frames hold directories
            // (level 2 and up) only.
            if P::ENTRY_BYTES == 8 {
                if let Some(table) = self.mode.table_at(raw, level) {
                    let (above, followed) = (top.access, top.followed);
                    return self.descend_here(raw, level, va, table, above, followed);
                }
            }
            let entry = step(self.mode, raw, level, top.access);
            return match entry.entry {
                Entry::Absent => {
                    // Skip the run of absent entries that follows, by blocks.
                    let e = P::ENTRY_BYTES;
                    let (start, end) = (top.next as usize * e, top.end as usize * e);
                    let left = match top.table.view() {
                        TableView::Bytes(t) => {
                            let mut rest = &t[start..end];
                            skip_absent::<P>(&mut rest);
                            rest.len()
                        }
                        TableView::Volatile(v) => skip_live_entries::<P>(v.sub(start, end)),
                    };
                    top.next = top.end - (left / e) as u32;
                    continue;
                }
                Entry::Page(pa) => Step::Event(WalkEvent::Leaf(Leaf {
                    space: SpaceId(self.space),
                    va: VirtAddr(self.mode.canonical(va)),
                    pa,
                    entry: raw,
                    level,
                    size_log2: P::shift(level) as u8,
                    access: entry.access,
                })),
                // For 8-byte entries `table_at` above took every table
                // entry already (it is `decode`'s `Table`).
                Entry::Table(table) => {
                    let (above, followed) = (top.access, top.followed);
                    if P::ENTRY_BYTES == 8 {
                        self.descend_here(raw, level, va, table, above, followed)
                    } else {
                        self.descend(raw, level, va, table, above, followed)
                    }
                }
                Entry::Reserved(pa) => {
                    Step::Event(self.fault(va, level, pa, FaultReason::Reserved))
                }
            };
        }
    }

    /// The next leaf of the page table being scanned, if any is left.
    #[inline(always)]
    fn next_pt_leaf(&mut self) -> Option<WalkEvent> {
        let space = SpaceId(self.space);
        let pt = &mut self.pt;
        let leaf = if P::ENTRY_BYTES == 8 {
            next_leaf_wide(self.mode, space, pt)
        } else {
            next_leaf(self.mode, space, &mut pt.rest, &mut pt.va, pt.access)
        };
        if leaf.is_some() || pt.live.is_empty() {
            return leaf;
        }
        next_leaf(self.mode, space, &mut pt.live, &mut pt.va, pt.access)
    }
}

impl<'a, P: PagingMode, M: PhysMem + ?Sized, O: Owners, F: AliasPolicy<'a>> Iterator
    for Walk<'a, P, M, O, F>
{
    type Item = WalkEvent;

    #[inline]
    fn next(&mut self) -> Option<WalkEvent> {
        loop {
            if let Some(leaf) = self.next_pt_leaf() {
                return Some(leaf);
            }
            match self.step() {
                Step::Event(e) => return Some(e),
                Step::Continue => {}
                Step::Done => return None,
            }
        }
    }

    /// Internal iteration: page tables are scanned in a tight loop into
    /// `g` (see `scan_pt`); directories go through the state machine.
    #[inline]
    fn fold<B, G>(mut self, init: B, mut g: G) -> B
    where
        G: FnMut(B, WalkEvent) -> B,
    {
        let mut acc = init;
        let mut masks = Masks::EMPTY;
        if self.pt.taken {
            acc = drain_block(self.mode, SpaceId(self.space), &mut self.pt, acc, &mut g);
        }
        loop {
            if !self.pt.rest.is_empty() {
                // Only the cursor says whether a table is being scanned:
                // emptied, the rest of the scan state may stay.
                let pt = self.pt.frozen();
                self.pt.rest = &[];
                acc = scan_pt(self.mode, SpaceId(self.space), pt, &mut masks, acc, &mut g);
            } else if !self.pt.live.is_empty() {
                let pt = core::mem::replace(&mut self.pt, PtScan::IDLE);
                acc = scan_live_pt(self.mode, SpaceId(self.space), pt, acc, &mut g);
            }
            acc = self.scan_directory(&mut masks, acc, &mut g);
            match self.step() {
                Step::Event(e) => acc = g(acc, e),
                Step::Continue => {}
                Step::Done => return acc,
            }
        }
    }
}
/// Once `next` returns `None` every root has been walked and the stack is
/// empty; later calls find no space left and return `None` again.
impl<'a, P: PagingMode, M: PhysMem + ?Sized, O: Owners, F: AliasPolicy<'a>> FusedIterator
    for Walk<'a, P, M, O, F>
{
}
