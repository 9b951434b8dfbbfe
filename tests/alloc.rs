//! A full multi-space walk allocates nothing, in both consumers, with the
//! owner index in caller-provided storage on the stack.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ptwalk::{
    OwnerIndex, OwnerSlot, PhysAddr, SpaceId, Spaces, Translation, VirtAddr, Walk, WalkEvent,
    WalkExt,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: as for `dealloc`; the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

#[test]
fn multi_space_walks_allocate_nothing() {
    let w = common::kshared16();
    let roots: Vec<PhysAddr> = w.roots.iter().map(|&r| PhysAddr(r)).collect();
    let mem = &w.image[..];

    let (n, allocs) = allocations(|| {
        let mut slots = [OwnerSlot::EMPTY; 1024];
        let walk = Walk::new(mem, &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]));
        walk.references().fold(0u64, |n, _| n + 1)
    });
    assert_eq!((n, allocs), (w.leaves_references + w.aliases, 0));

    let (n, allocs) = allocations(|| {
        let mut slots = [OwnerSlot::EMPTY; 1024];
        let walk = Walk::new(mem, &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]));
        let mut n = 0u64;
        for e in walk.follow_aliases() {
            n += u64::from(matches!(e, WalkEvent::Leaf(_)));
        }
        n
    });
    assert_eq!((n, allocs), (w.leaves_followed, 0));

    // Coalesced, every space is: one kernel run (256 Ki contiguous
    // writable pages), and in each private region runs of 7 writable pages
    // and 1 copy-on-write page, so 2 runs per 8 pages: 4096 / 8 * 2 at
    // 0x08000000 and 16 / 8 * 2 at 0xBFFF0000.
    let per_space = 1 + 4096 / 8 * 2 + 16 / 8 * 2;
    let (runs, allocs) = allocations(|| Walk::new(mem, &roots).unwrap().coalesce().count());
    assert_eq!((runs, allocs), (16 * per_space, 0));

    // The v2p probes: as many translate as the workload definition says.
    let (space, vas) = common::v2p_vas();
    let (mapped, allocs) = allocations(|| {
        let spaces = Spaces::new(mem, &roots).unwrap();
        let mut mapped = 0;
        for &va in &vas {
            match spaces.translate(SpaceId(space as u32), VirtAddr(va)) {
                Ok(Translation::Mapped(_)) => mapped += 1,
                Ok(Translation::Unmapped) => {}
                other => panic!("{va:#x}: {other:?}"),
            }
        }
        mapped
    });
    assert_eq!((mapped, allocs), (common::V2P_MAPPED, 0));
}

/// The counter works: an allocation is seen (the test above cannot pass by
/// counting nothing).
#[test]
fn counter_sees_allocations() {
    let (_, allocs) = allocations(|| std::hint::black_box(vec![1u8; 100]));
    assert_eq!(allocs, 1);
}
