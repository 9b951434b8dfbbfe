//! Wall-clock benchmark of snapshot compaction (not a test, not gated):
//! 16 spaces sharing 16 MiB of kernel pages, each with 8 MiB of private
//! pages (144 MiB of distinct mapped pages), compacted with sharing kept,
//! timed against a plain copy of the same bytes in the same run.
//!
//! `cargo bench --bench compact`

use std::hint::black_box;
use std::time::{Duration, Instant};

use ptwalk::compact::{Compactor, Policy};
use ptwalk::{GrowableOwners, PhysAddr, Walk, WalkExt};

const P: u32 = 1;
const RW: u32 = 2;
const US: u32 = 4;

struct Img(Vec<u8>);

impl Img {
    fn alloc(&mut self) -> u32 {
        let pa = self.0.len() as u32;
        self.0.resize(self.0.len() + 4096, 0);
        pa
    }
    fn put(&mut self, table: u32, idx: u32, v: u32) {
        let o = (table + 4 * idx) as usize;
        self.0[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// Maps `pages` fresh data pages at `va` (tables created as needed).
fn map_fresh(img: &mut Img, root: u32, va: u32, pages: u32, flags: u32) {
    let mut pt = 0;
    for n in 0..pages {
        let v = va + n * 4096;
        if pt == 0 || (v >> 12) & 0x3FF == 0 {
            pt = img.alloc();
            img.put(root, v >> 22, pt | P | RW | US);
        }
        let page = img.alloc();
        img.0[page as usize..][..8].copy_from_slice(&u64::from(page).to_le_bytes());
        img.put(pt, (v >> 12) & 0x3FF, page | flags);
    }
}

fn best_of(n: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..n {
        let t = Instant::now();
        out = black_box(f());
        best = best.min(t.elapsed());
    }
    (best, out)
}

fn main() {
    let mut img = Img(vec![0; 4096]);
    let roots: Vec<u32> = (0..16).map(|_| img.alloc()).collect();
    map_fresh(&mut img, roots[0], 0xC000_0000, 4096, P | RW);
    for &r in &roots[1..] {
        for pdi in 768..1024 {
            let o = (roots[0] + 4 * pdi) as usize;
            let v = u32::from_le_bytes(img.0[o..o + 4].try_into().unwrap());
            img.put(r, pdi, v);
        }
    }
    for &r in &roots {
        map_fresh(&mut img, r, 0x0800_0000, 2048, P | RW | US);
    }
    let roots: Vec<PhysAddr> = roots.iter().map(|&r| PhysAddr(r.into())).collect();
    let mem = &img.0[..];

    let (compact_time, kept) = best_of(5, || {
        let out = Compactor::new(mem, &roots)
            .unwrap()
            .policy(Policy::default())
            .run()
            .unwrap();
        assert_eq!(out.stats().aliases_linked, 15 * 4);
        out.stats().data_bytes as usize
    });
    // The plain copy of the kept bytes: every mapped page once, in walk
    // order, appended to a growing buffer, as the compactor copies them.
    let pages: Vec<usize> = Walk::new(mem, &roots)
        .unwrap()
        .with_owners(GrowableOwners::new())
        .references()
        .leaves()
        .map(|l| l.pa.0 as usize)
        .collect();
    let (copy_time, copied) = best_of(5, || {
        let mut v = Vec::new();
        for &p in &pages {
            v.extend_from_slice(&mem[p..p + 4096]);
        }
        v.len()
    });
    assert_eq!(copied, kept);
    println!(
        "compact: {} MiB of mapped pages in 16 spaces: compaction {:.1} ms, plain copy {:.1} ms, ratio {:.2}x (aim: 1.5x)",
        kept >> 20,
        compact_time.as_secs_f64() * 1e3,
        copy_time.as_secs_f64() * 1e3,
        compact_time.as_secs_f64() / copy_time.as_secs_f64()
    );
}
