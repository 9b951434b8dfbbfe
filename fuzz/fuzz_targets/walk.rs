//! Fuzz target `walk`: arbitrary memory, 1–4 arbitrary roots, an arbitrary
//! range, any paging mode (i686 with PSE on or off, PAE, 4- and 5-level
//! x86-64, NXE on or off, MAXPHYADDR 36 or 52, chosen by the header's free
//! bits). Both consumers, through both iteration paths (`next` and the
//! internal `fold`), must produce exactly the events of the independent
//! reference model (`tests/model/mod.rs`), within a bound computed from
//! the range and the number of roots; the live (volatile) backend must
//! walk exactly like the slice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ptwalk::{
    GrowableOwners, I686, Pae, PagingMode, PhysAddr, PhysMem, VolatileMem, Walk, WalkError,
    WalkEvent, X86_64,
};

#[path = "../../tests/model/mod.rs"]
#[allow(unused_imports, dead_code, clippy::all)]
mod model;
#[allow(dead_code)]
mod input;

use input::Case;
use model::{Consumer, Mode};

/// The mode the header's free bits choose: bits 0..=1 the kind, bit 2
/// NXE, bit 3 MAXPHYADDR 36 rather than 52.
fn mode_of(c: &Case) -> Mode {
    let nxe = c.policy & 4 != 0;
    let max_phys_bits = if c.policy & 8 != 0 { 36 } else { 52 };
    match c.policy & 3 {
        0 => Mode::I686 { pse: c.pse },
        1 => Mode::Pae { nxe, max_phys_bits },
        k => Mode::X86_64 {
            la57: k == 3,
            nxe,
            max_phys_bits,
        },
    }
}

/// Most events a walk of `c` may yield: per space, one fault for its
/// root, plus per level one event per entry in range (at most), plus the
/// 4 KiB pages in the range.
fn bound(c: &Case, mode: Mode) -> usize {
    let Some((start, end)) = model::clip(mode, c.address, c.len) else {
        return 0;
    };
    let bits = mode.va_bits();
    let linear = |va: u64| if bits >= 64 { va } else { va & ((1 << bits) - 1) };
    let (start, last) = (linear(start), linear(end - 1));
    let (start, last) = if last < start { (0, (1 << bits) - 1) } else { (start, last) };
    let per_level: u64 = (1..=mode.levels())
        .map(|l| {
            let shift = mode.shift(l);
            (last >> shift) - (start >> shift) + 1
        })
        .sum();
    c.roots.len().saturating_mul(1 + usize::try_from(per_level).unwrap_or(usize::MAX))
}

/// One consumer's events over `mem` in mode `m`, by `next` or by `fold`,
/// stopping (and failing) past `bound`.
fn events<P: PagingMode, M: PhysMem + ?Sized>(
    m: P,
    mem: &M,
    c: &Case,
    follow: bool,
    by_fold: bool,
    bound: usize,
) -> Vec<WalkEvent> {
    let walk = Walk::new_in(m, mem, &c.roots)
        .expect("roots were checked")
        .range(c.address, c.len)
        .with_owners(GrowableOwners::new());
    let over = |n: usize| assert!(n <= bound, "more than {bound} events: no termination bound");
    match (follow, by_fold) {
        (false, false) => {
            let ev: Vec<_> = walk.references().take(bound.saturating_add(1)).collect();
            over(ev.len());
            ev
        }
        (true, false) => {
            let ev: Vec<_> = walk.follow_aliases().take(bound.saturating_add(1)).collect();
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

/// Checks every consumer and path of the walk in mode `m` (the crate's
/// value for the model's `mode`) against the model.
fn check<P: PagingMode>(m: P, mode: Mode, c: &Case) {
    match Walk::new_in(m, &c.mem[..], &c.roots) {
        Ok(_) => {}
        Err(WalkError::DuplicateRoot { first, second, .. }) => {
            // Duplicates are roots naming the same table (CR3 bits aside).
            assert_eq!(
                mode.root_table(c.roots[first].0),
                mode.root_table(c.roots[second].0)
            );
            return;
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
    let bound = bound(c, mode);
    let roots: Vec<u64> = c.roots.iter().map(|r| r.0).collect();
    let model = |consumer| model::model(mode, &c.mem, &roots, c.address, c.len, consumer);
    let want = [model(Consumer::References), model(Consumer::FollowIn(&c.mem))];
    let ptr = c.mem.as_ptr();
    // SAFETY: `c.mem` outlives `live` and nobody writes it meanwhile (a
    // frozen buffer is trivially fine for the volatile backend).
    let live = unsafe { VolatileMem::new(ptr, PhysAddr(0), c.mem.len()) };
    for (follow, want) in [false, true].into_iter().zip(&want) {
        for by_fold in [false, true] {
            let have = events(m, &c.mem[..], c, follow, by_fold, bound);
            assert_eq!(
                &have, want,
                "{mode:?}, follow {follow}, fold {by_fold}: walk differs from the model"
            );
            let have = events(m, &live, c, follow, by_fold, bound);
            assert_eq!(
                &have, want,
                "{mode:?}, follow {follow}, fold {by_fold}: volatile walk differs"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let c = input::decode(data);
    let mode = mode_of(&c);
    match mode {
        Mode::I686 { pse } => check(I686 { pse }, mode, &c),
        Mode::Pae { nxe, max_phys_bits } => check(
            Pae::new().with_nxe(nxe).with_max_phys_bits(max_phys_bits),
            mode,
            &c,
        ),
        Mode::X86_64 {
            la57,
            nxe,
            max_phys_bits,
        } => check(
            X86_64::new()
                .with_la57(la57)
                .with_nxe(nxe)
                .with_max_phys_bits(max_phys_bits),
            mode,
            &c,
        ),
    }
});
