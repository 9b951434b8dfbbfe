//! Fuzz target `walk`: arbitrary memory, 1–4 arbitrary roots, an arbitrary
//! range, PSE on or off. Both consumers, through both iteration paths
//! (`next` and the internal `fold`), must produce exactly the events of
//! the independent reference model (`tests/common/mod.rs`), within a
//! bound computed from the range and the number of roots; the live
//! (volatile) backend must walk exactly like the slice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ptwalk::{
    GrowableOwners, I686, PagingMode, PhysAddr, PhysMem, VolatileMem, Walk, WalkError, WalkEvent,
};

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports, clippy::all)]
mod common;
#[allow(dead_code)]
mod input;

use common::Consumer;
use input::Case;

/// Most events a walk of `c` may yield: per space, one fault for its
/// root, or per directory entry in range one event or the leaves of its
/// page table within the range (at most the 4 KiB pages in the range).
fn bound(c: &Case) -> usize {
    let start = c.address & !0xFFF;
    let end = c.address.saturating_add(c.len).min(1 << 32);
    if c.len == 0 || start >= end {
        return 0;
    }
    let directory_entries = ((end - 1) >> 22) - (start >> 22) + 1;
    let pages = (end - start).div_ceil(1 << 12);
    c.roots.len() * (1 + (directory_entries + pages) as usize)
}

/// One consumer's events over `mem`, by `next` or by `fold`, stopping
/// (and failing) past `bound`.
fn events<M: PhysMem + ?Sized>(
    mem: &M,
    c: &Case,
    follow: bool,
    by_fold: bool,
    bound: usize,
) -> Vec<WalkEvent> {
    let walk = Walk::new(mem, &c.roots)
        .expect("roots were checked")
        .with_mode(I686 { pse: c.pse })
        .range(c.address, c.len)
        .with_owners(GrowableOwners::new());
    let over = |n: usize| assert!(n <= bound, "more than {bound} events: no termination bound");
    match (follow, by_fold) {
        (false, false) => {
            let ev: Vec<_> = walk.references().take(bound + 1).collect();
            over(ev.len());
            ev
        }
        (true, false) => {
            let ev: Vec<_> = walk.follow_aliases().take(bound + 1).collect();
            over(ev.len());
            ev
        }
        (false, true) => walk.references().fold(Vec::new(), |mut v, e| {
            v.push(e);
            over(v.len());
            v
        }),
        (true, true) => walk.follow_aliases().fold(Vec::new(), |mut v, e| {
            v.push(e);
            over(v.len());
            v
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let c = input::decode(data);
    match Walk::new(&c.mem[..], &c.roots) {
        Ok(_) => {}
        Err(WalkError::DuplicateRoot { first, second, .. }) => {
            // Duplicates are roots naming the same table (CR3 flag bits aside).
            assert_eq!(
                I686::root_table(c.roots[first]),
                I686::root_table(c.roots[second])
            );
            return;
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
    let bound = bound(&c);
    let roots: Vec<u64> = c.roots.iter().map(|r| r.0).collect();
    let model = |consumer| common::model(&c.mem, &roots, c.pse, c.address, c.len, consumer);
    let want = [
        model(Consumer::References),
        model(Consumer::FollowIn(&c.mem)),
    ];
    let ptr = c.mem.as_ptr();
    // SAFETY: `c.mem` outlives `live` and nobody writes it meanwhile (a
    // frozen buffer is trivially fine for the volatile backend).
    let live = unsafe { VolatileMem::new(ptr, PhysAddr(0), c.mem.len()) };
    for (follow, want) in [false, true].into_iter().zip(&want) {
        for by_fold in [false, true] {
            let have = events(&c.mem[..], &c, follow, by_fold, bound);
            assert_eq!(
                &have, want,
                "follow {follow}, fold {by_fold}: walk differs from the model"
            );
            let have = events(&live, &c, follow, by_fold, bound);
            assert_eq!(
                &have, want,
                "follow {follow}, fold {by_fold}: volatile walk differs"
            );
        }
    }
});
