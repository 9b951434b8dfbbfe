//! Per-instruction benchmarks (iai-callgrind) of the standard workloads in
//! docs/BENCHMARKS.md. Each workload is built in a setup function, outside the
//! measurement; every bench consumes events with the same cheap, honest
//! consumer (per leaf `va ^ pa`, per alias `va ^ owner_va`, summed) and
//! returns the sum through `black_box`.
//!
//! iai-callgrind names each benchmark `<function>.<workload>` (e.g.
//! `follow_external.kshared16`); the gate (`benches/gate.rs`) looks those
//! names up in `benches/budgets.txt`.

#![allow(missing_docs)] // the benchmark macros generate undocumented modules

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::hint::black_box;

use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use ptwalk::{
    OwnerIndex, OwnerSlot, PhysAddr, SpaceId, Spaces, VirtAddr, Walk, WalkEvent, WalkExt,
};

/// A workload ready to walk, with empty owner-index storage sized for it
/// (`common::bench_slots`: room for every table, at least 1,024 slots).
struct Input {
    image: Vec<u8>,
    roots: Vec<PhysAddr>,
    slots: Vec<OwnerSlot>,
}

fn input(w: common::Workload) -> Input {
    Input {
        slots: vec![OwnerSlot::EMPTY; common::bench_slots(w.image.len())],
        image: w.image,
        roots: w.roots.into_iter().map(PhysAddr).collect(),
    }
}

fn build_dense1() -> Input {
    input(common::dense1())
}
fn build_kshared16() -> Input {
    input(common::kshared16())
}
fn build_sparse1() -> Input {
    input(common::sparse1())
}

#[inline(always)]
fn consume(acc: u64, e: WalkEvent) -> u64 {
    match e {
        WalkEvent::Leaf(l) => acc.wrapping_add(l.va.0 ^ l.pa.0),
        WalkEvent::Aliasing(a) => acc.wrapping_add(a.va.0 ^ a.owner_va.0),
        _ => acc,
    }
}

macro_rules! walk_benches {
    ($($name:ident: $consumer:ident, $how:ident;)*) => {$(
        #[library_benchmark]
        #[bench::dense1(build_dense1())]
        #[bench::kshared16(build_kshared16())]
        #[bench::sparse1(build_sparse1())]
        fn $name(mut input: Input) -> u64 {
            let walk = Walk::new(&input.image[..], &input.roots)
                .unwrap()
                .with_owners(OwnerIndex::new(&mut input.slots[..]))
                .$consumer();
            black_box(walk_benches!(@$how walk))
        }
    )*};
    (@internal $walk:ident) => {
        $walk.fold(0u64, consume)
    };
    (@external $walk:ident) => {{
        let mut acc = 0u64;
        for e in $walk {
            acc = consume(acc, e);
        }
        acc
    }};
}

walk_benches! {
    references_internal: references, internal;
    references_external: references, external;
    follow_internal: follow_aliases, internal;
    follow_external: follow_aliases, external;
}

/// kshared16 plus the v2p probe list.
fn v2p_input() -> (Input, Vec<VirtAddr>, SpaceId) {
    let (space, vas) = common::v2p_vas();
    (
        build_kshared16(),
        vas.into_iter().map(VirtAddr).collect(),
        SpaceId(space as u32),
    )
}

#[library_benchmark]
#[bench::kshared16(v2p_input())]
fn v2p_internal((input, vas, space): (Input, Vec<VirtAddr>, SpaceId)) -> u64 {
    let spaces = Spaces::new(&input.image[..], &input.roots).unwrap();
    black_box(
        vas.iter()
            .fold(0u64, |acc, &va| match spaces.translate(space, va) {
                Ok(ptwalk::Translation::Mapped(l)) => acc.wrapping_add(l.va.0 ^ l.pa.0),
                _ => acc,
            }),
    )
}

#[library_benchmark]
#[bench::kshared16(v2p_input())]
fn v2p_external((input, vas, space): (Input, Vec<VirtAddr>, SpaceId)) -> u64 {
    let spaces = Spaces::new(&input.image[..], &input.roots).unwrap();
    let mut acc = 0u64;
    for &va in &vas {
        if let Ok(ptwalk::Translation::Mapped(l)) = spaces.translate(space, va) {
            acc = acc.wrapping_add(l.va.0 ^ l.pa.0);
        }
    }
    black_box(acc)
}

// `ptwalk walk --format count`'s consumer: `WalkExt::counts`.
#[library_benchmark]
#[bench::dense1(build_dense1())]
#[bench::kshared16(build_kshared16())]
fn counts_follow(mut input: Input) -> u64 {
    let c = Walk::new(&input.image[..], &input.roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut input.slots[..]))
        .follow_aliases()
        .counts();
    black_box(c.leaves + c.aliases)
}

// Compaction of kshared16 (its frames lie outside the image, so this
// measures the walk, the table rebuild and the re-linking, not copying).
#[library_benchmark]
#[bench::kshared16(build_kshared16())]
fn compact(input: Input) -> u64 {
    let out = ptwalk::compact::Compactor::new(&input.image[..], &input.roots)
        .unwrap()
        .run()
        .unwrap();
    black_box(out.stats().tables_written)
}

library_benchmark_group!(
    name = walk;
    benchmarks = references_internal, references_external, follow_internal, follow_external,
        v2p_internal, v2p_external, counts_follow, compact
);

main!(library_benchmark_groups = walk);
