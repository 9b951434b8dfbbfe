//! A full multi-space walk allocates nothing, in both consumers, with the
//! owner index in caller-provided storage on the stack.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ptwalk::{OwnerIndex, OwnerSlot, PhysAddr, Spaces, VirtAddr, Walk, WalkEvent, WalkExt};

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

    let (runs, allocs) = allocations(|| Walk::new(mem, &roots).unwrap().coalesce().count());
    assert!(runs > 0);
    assert_eq!(allocs, 0);

    let (hits, allocs) = allocations(|| {
        let spaces = Spaces::new(mem, &roots).unwrap();
        (0..4096u64)
            .filter(|i| {
                spaces
                    .translate(ptwalk::SpaceId(7), VirtAddr(i << 20))
                    .is_ok()
            })
            .count()
    });
    assert_eq!((hits, allocs), (4096, 0));
}

/// The counter works: an allocation is seen (the test above cannot pass by
/// counting nothing).
#[test]
fn counter_sees_allocations() {
    let (_, allocs) = allocations(|| std::hint::black_box(vec![1u8; 100]));
    assert_eq!(allocs, 1);
}
