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
use std::io::Read;

use iai_callgrind::{library_benchmark, library_benchmark_group, main};
use ptwalk::{
    I686, OwnerIndex, OwnerSlot, Pae, PagingMode, PhysAddr, SpaceId, Spaces, VirtAddr, Walk,
    WalkEvent, WalkExt, X86_64,
};

/// The paging mode a workload is walked in.
#[derive(Clone, Copy)]
enum Mode {
    I686,
    Pae,
    X64,
}

/// A workload ready to walk, with empty owner-index storage sized for it
/// (`common::bench_slots`: room for every table, at least 1,024 slots).
struct Input {
    mode: Mode,
    image: Vec<u8>,
    roots: Vec<PhysAddr>,
    slots: Vec<OwnerSlot>,
}

fn input(w: common::Workload) -> Input {
    Input {
        mode: Mode::I686,
        slots: vec![OwnerSlot::EMPTY; common::bench_slots(w.image.len())],
        image: w.image,
        roots: w.roots.into_iter().map(PhysAddr).collect(),
    }
}

fn input64(w: common::Workload64) -> Input {
    Input {
        mode: if w.levels == 3 { Mode::Pae } else { Mode::X64 },
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
fn build_x64_dense1() -> Input {
    input64(common::x64_dense1())
}
fn build_x64_kshared16() -> Input {
    input64(common::x64_kshared16())
}
fn build_x64_sparse1() -> Input {
    input64(common::x64_sparse1())
}
fn build_pae_dense1() -> Input {
    input64(common::pae_dense1())
}
fn build_pae_kshared16() -> Input {
    input64(common::pae_kshared16())
}

/// The x86_64-pti real-guest fixture (Debian 6.1, PTI on, 4 vCPUs): its
/// table pages as a flat image and every root of its meta.json, the kernel
/// and user PGD of each vCPU's process (8 roots, 144 table pages).
fn build_x64_pti() -> Input {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/guests/x86_64-pti"
    );
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(format!("{dir}/tables.bin.gz")).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/meta.json")).unwrap()).unwrap();
    let roots = meta["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let pa = r["pa"].as_str().unwrap().trim_start_matches("0x");
            PhysAddr(u64::from_str_radix(pa, 16).unwrap())
        })
        .collect();
    let pages = meta["table_pages"].as_u64().unwrap() as usize;
    Input {
        mode: Mode::X64,
        image: common::flat_image_from_records(&raw),
        roots,
        slots: vec![OwnerSlot::EMPTY; common::bench_slots(pages * 4096)],
    }
}

#[inline(always)]
fn consume(acc: u64, e: WalkEvent) -> u64 {
    match e {
        WalkEvent::Leaf(l) => acc.wrapping_add(l.va.0 ^ l.pa.0),
        WalkEvent::Aliasing(a) => acc.wrapping_add(a.va.0 ^ a.owner_va.0),
        _ => acc,
    }
}

/// Calls `$go(mode, input, args...)` with the input's paging mode, each
/// mode a separate monomorphised walk.
macro_rules! in_mode {
    ($go:ident, $input:expr $(, $arg:expr)*) => {
        match $input.mode {
            Mode::I686 => $go(I686::default(), $input $(, $arg)*),
            Mode::Pae => $go(Pae::default(), $input $(, $arg)*),
            Mode::X64 => $go(X86_64::default(), $input $(, $arg)*),
        }
    };
}

macro_rules! walk_benches {
    ($($name:ident: $consumer:ident, $how:ident;)*) => {$(
        #[library_benchmark]
        #[bench::dense1(build_dense1())]
        #[bench::kshared16(build_kshared16())]
        #[bench::sparse1(build_sparse1())]
        #[bench::x64_dense1(build_x64_dense1())]
        #[bench::x64_kshared16(build_x64_kshared16())]
        #[bench::x64_sparse1(build_x64_sparse1())]
        #[bench::pae_dense1(build_pae_dense1())]
        #[bench::pae_kshared16(build_pae_kshared16())]
        fn $name(mut input: Input) -> u64 {
            fn go<P: PagingMode>(mode: P, input: &mut Input) -> u64 {
                let walk = Walk::new_in(mode, &input.image[..], &input.roots)
                    .unwrap()
                    .with_owners(OwnerIndex::new(&mut input.slots[..]))
                    .$consumer();
                walk_benches!(@$how walk)
            }
            black_box(in_mode!(go, &mut input))
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

// The real guest: every root, following aliases.
#[library_benchmark]
#[bench::x64_pti(build_x64_pti())]
fn guest_follow_internal(mut input: Input) -> u64 {
    let walk = Walk::new_in(X86_64::default(), &input.image[..], &input.roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut input.slots[..]))
        .follow_aliases();
    black_box(walk.fold(0u64, consume))
}

#[library_benchmark]
#[bench::x64_pti(build_x64_pti())]
fn guest_follow_external(mut input: Input) -> u64 {
    let walk = Walk::new_in(X86_64::default(), &input.image[..], &input.roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut input.slots[..]))
        .follow_aliases();
    let mut acc = 0u64;
    for e in walk {
        acc = consume(acc, e);
    }
    black_box(acc)
}

/// A workload plus a v2p probe list and the space it is translated in.
type V2p = (Input, Vec<VirtAddr>, SpaceId);

/// kshared16 plus the v2p probe list.
fn v2p_input() -> V2p {
    let (space, vas) = common::v2p_vas();
    (
        build_kshared16(),
        vas.into_iter().map(VirtAddr).collect(),
        SpaceId(space as u32),
    )
}

/// `x64_kshared16` plus the x86-64 v2p probe list.
fn x64_v2p_input() -> V2p {
    let (space, vas) = common::x64_v2p_vas();
    (
        build_x64_kshared16(),
        vas.into_iter().map(VirtAddr).collect(),
        SpaceId(space as u32),
    )
}

#[library_benchmark]
#[bench::kshared16(v2p_input())]
#[bench::x64_kshared16(x64_v2p_input())]
fn v2p_internal((mut input, vas, space): V2p) -> u64 {
    black_box(in_mode!(v2p_fold, &mut input, &vas, space))
}

fn v2p_fold<P: PagingMode>(mode: P, input: &mut Input, vas: &[VirtAddr], space: SpaceId) -> u64 {
    let spaces = Spaces::new_in(mode, &input.image[..], &input.roots).unwrap();
    vas.iter()
        .fold(0u64, |acc, &va| match spaces.translate(space, va) {
            Ok(ptwalk::Translation::Mapped(l)) => acc.wrapping_add(l.va.0 ^ l.pa.0),
            _ => acc,
        })
}

#[library_benchmark]
#[bench::kshared16(v2p_input())]
#[bench::x64_kshared16(x64_v2p_input())]
fn v2p_external((mut input, vas, space): V2p) -> u64 {
    black_box(in_mode!(v2p_loop, &mut input, &vas, space))
}

fn v2p_loop<P: PagingMode>(mode: P, input: &mut Input, vas: &[VirtAddr], space: SpaceId) -> u64 {
    let spaces = Spaces::new_in(mode, &input.image[..], &input.roots).unwrap();
    let mut acc = 0u64;
    for &va in vas {
        if let Ok(ptwalk::Translation::Mapped(l)) = spaces.translate(space, va) {
            acc = acc.wrapping_add(l.va.0 ^ l.pa.0);
        }
    }
    acc
}

// `ptwalk walk --format count`'s consumer: `WalkExt::counts`.
#[library_benchmark]
#[bench::dense1(build_dense1())]
#[bench::kshared16(build_kshared16())]
#[bench::x64_dense1(build_x64_dense1())]
#[bench::x64_kshared16(build_x64_kshared16())]
#[bench::pae_dense1(build_pae_dense1())]
#[bench::pae_kshared16(build_pae_kshared16())]
fn counts_follow(mut input: Input) -> u64 {
    fn go<P: PagingMode>(mode: P, input: &mut Input) -> u64 {
        let c = Walk::new_in(mode, &input.image[..], &input.roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut input.slots[..]))
            .follow_aliases()
            .counts();
        c.leaves + c.aliases
    }
    black_box(in_mode!(go, &mut input))
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
        guest_follow_internal, guest_follow_external, v2p_internal, v2p_external, counts_follow,
        compact
);

main!(library_benchmark_groups = walk);
