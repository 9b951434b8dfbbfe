//! Internal iteration's shortcut through page directories (level 2, the
//! tables whose entries name page tables): a run of plain table entries,
//! each naming a page table that lies wholly in the range, is claimed and
//! scanned straight from one loop, without a step of the state machine
//! (and its frame loads, `Step` result and page-table cursor) per page
//! table. The first entry needing anything else (absent, a large page,
//! reserved bits, a table cut by the range, unreadable or live memory) is
//! left to the state machine, which handles every case; everything done
//! here is what it would do, in the same order.

use super::block::Masks;
use super::machine::Step;
use super::scan::{Frozen, PtScan, scan_live_pt, scan_pt};
use super::{AliasPolicy, Walk};
use crate::addr::{Level, SpaceId, VirtAddr};
use crate::error::FaultReason;
use crate::event::WalkEvent;
use crate::mem::{PhysMem, TableView};
use crate::mode::PagingMode;
use crate::owners::{Claim, Owners};

impl<'a, P: PagingMode, M: PhysMem + ?Sized, O: Owners, F: AliasPolicy<'a>> Walk<'a, P, M, O, F> {
    /// Scans into `g` the page tables that the page directory on top of
    /// the stack names from its cursor on, up to the first entry the state
    /// machine must handle (the cursor is left there). Nothing if the top
    /// table is not a page directory of lent memory.
    #[inline(always)]
    pub(super) fn scan_directory<B, G: FnMut(B, WalkEvent) -> B>(
        &mut self,
        masks: &mut Masks,
        mut acc: B,
        g: &mut G,
    ) -> B {
        const PD: Level = Level(2);
        let Some(top) = self.stack.last() else {
            return acc;
        };
        if top.level != PD {
            return acc;
        }
        let TableView::Bytes(t) = top.table.view() else {
            return acc;
        };
        let (mut i, end, base, above, followed) =
            (top.next, top.end, top.base, top.access, top.followed);
        let shift = P::shift(PD);
        let space = SpaceId(self.space);
        // Copied out of `self`: the claims write memory the compiler cannot
        // tell apart from the walk's fields, which it would load again.
        let (mode, lo, hi) = (self.mode, self.start, self.end);
        while i < end {
            let raw = P::load(t, i as usize);
            let Some(pt) = mode.table_at(raw, PD) else {
                break;
            };
            // The entry's VA is in the range (the frame's bounds say so);
            // its page table must end in it too, else it is clipped there.
            let va = base + (u64::from(i) << shift);
            if va < lo || hi - va < 1 << shift {
                break;
            }
            // An unreadable table is never owned: read before claiming.
            let Ok(table) = self.table(followed, pt, P::table_bytes(Level::PT)) else {
                break;
            };
            // Exactly the page table: a backend may lend more than asked.
            let TableView::Bytes(bytes) = table.view() else {
                break;
            };
            let Some(bytes) = bytes.get(..P::table_bytes(Level::PT)) else {
                break;
            };
            let access = above & mode.access(raw, PD);
            i += 1;
            if !followed {
                let canonical = VirtAddr(mode.canonical(va));
                match self.owners.claim(pt, Level::PT, space, canonical) {
                    Claim::New => {}
                    // As `descend`: followed in the frozen memory walked,
                    // an alias is the table its entry names.
                    Claim::Owned { .. }
                        if self.policy.follows_walked_memory() && self.mem.frozen() => {}
                    Claim::Owned {
                        space: owner,
                        va: owner_va,
                    } => {
                        match self.on_alias(raw, PD, va, pt, above, owner, owner_va) {
                            Step::Event(e) => acc = g(acc, e),
                            // Resolved: the table it resolved to is pushed.
                            _ => acc = self.scan_pushed(masks, acc, g),
                        }
                        continue;
                    }
                    Claim::Full => {
                        let fault = self.fault(va, Level::PT, pt, FaultReason::IndexFull);
                        acc = g(acc, fault);
                        continue;
                    }
                }
            }
            let pt = Frozen {
                rest: bytes,
                va: mode.canonical(va),
                access,
            };
            acc = scan_pt(mode, space, pt, masks, acc, g);
        }
        if let Some(top) = self.stack.last_mut() {
            top.next = i;
        }
        acc
    }

    /// Scans the page table the state machine pushed, if any.
    #[inline(never)]
    fn scan_pushed<B, G: FnMut(B, WalkEvent) -> B>(
        &mut self,
        masks: &mut Masks,
        acc: B,
        g: &mut G,
    ) -> B {
        let pt = core::mem::replace(&mut self.pt, PtScan::IDLE);
        let space = SpaceId(self.space);
        if !pt.rest.is_empty() {
            scan_pt(self.mode, space, pt.frozen(), masks, acc, g)
        } else if !pt.live.is_empty() {
            scan_live_pt(self.mode, space, pt, acc, g)
        } else {
            acc
        }
    }
}
