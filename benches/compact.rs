//! Wall-clock benchmarks of snapshot compaction (not tests, not gated).
//!
//! 1. In process: 16 spaces sharing 16 MiB of kernel pages, each with
//!    8 MiB of private pages (144 MiB of distinct mapped pages), compacted
//!    into memory with sharing kept, timed against a plain copy of the same
//!    pages in the same run.
//! 2. Whole process: a 1 GiB guest image on disk (16 spaces; a kernel
//!    direct map of 4 MiB pages that vmalloc-style 4 KiB mappings also
//!    reach; private 4 KiB pages), `ptwalk compact` (and `--verify`) timed
//!    and its peak RSS read from `wait4`, against copying the same file.
//!
//! `cargo bench --bench compact` (`PTWALK_BENCH_MIB` sets the size of the
//! second; the files go to the system temporary directory).

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::process::Command;
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
    // The whole-process run first: a child's peak RSS counts what its
    // parent held when it forked.
    whole_process();
    in_process();
}

fn in_process() {
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

/// Runs `cmd`, returning its wall time and peak RSS (KiB).
fn measure(cmd: &mut Command) -> (Duration, i64) {
    let t = Instant::now();
    // Reaped by wait4 below (which also reads its resource usage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = t.elapsed();
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    (elapsed, usage.ru_maxrss)
}

/// A guest of `mib` MiB of distinct mapped data, written to `path`;
/// returns its roots. Page tables come first, then a 256 MiB-aligned
/// kernel direct map (4 MiB pages, owned by space 0, shared by all), then
/// private 4 KiB pages; each space also maps 64 pages of the direct map
/// with 4 KiB pages (vmalloc-style), so those frames are reached through
/// two page sizes.
fn guest(path: &Path, mib: u64) -> (Vec<u64>, std::ops::Range<u64>) {
    const SPACES: u64 = 16;
    let kernel = (mib / 4).max(4) & !3; // MiB, in 4 MiB pages
    let private = (mib - kernel) / SPACES; // MiB per space
    let mut t = Img(vec![0; 4096]);
    let roots: Vec<u32> = (0..SPACES).map(|_| t.alloc()).collect();
    // Tables for the private pages and the vmalloc window.
    let pts_per_space = (private * 256).div_ceil(1024) + 1;
    let pts: Vec<Vec<u32>> = roots
        .iter()
        .map(|_| (0..pts_per_space).map(|_| t.alloc()).collect())
        .collect();
    let kbase = (t.0.len() as u64).next_multiple_of(256 << 20);
    let pbase = kbase + (kernel << 20);
    for (s, &r) in roots.iter().enumerate() {
        for k in 0..kernel / 4 {
            let pde = (kbase + (k << 22)) as u32 | P | RW | 0x80;
            t.put(r, 768 + k as u32, pde);
        }
        let mine = &pts[s];
        let first = pbase + s as u64 * (private << 20);
        for n in 0..private * 256 {
            let pt = mine[(n / 1024) as usize];
            if n % 1024 == 0 {
                t.put(r, 0x20 + (n / 1024) as u32, pt | P | RW | US);
            }
            t.put(
                pt,
                (n % 1024) as u32,
                (first + (n << 12)) as u32 | P | RW | US,
            );
        }
        let vm = *mine.last().unwrap();
        t.put(r, 0x3F0, vm | P | RW);
        for n in 0..64u64 {
            t.put(vm, n as u32, (kbase + (n << 14)) as u32 | P | RW);
        }
    }
    let mut f = File::create(path).unwrap();
    f.write_all(&t.0).unwrap();
    let end = pbase + SPACES * (private << 20);
    let mut page = vec![0u8; 1 << 20];
    let mut at = t.0.len() as u64;
    f.write_all(&vec![0u8; (kbase - at) as usize]).unwrap();
    at = kbase;
    while at < end {
        for (i, w) in page.chunks_mut(8).enumerate() {
            w.copy_from_slice(&(at + 8 * i as u64).to_le_bytes());
        }
        f.write_all(&page).unwrap();
        at += page.len() as u64;
    }
    f.sync_all().unwrap();
    (roots.iter().map(|&r| u64::from(r)).collect(), kbase..end)
}

/// The plain copy the compaction is held against: the same data bytes
/// read from the image and written to a new file, flushed to disk.
fn plain_copy(input: &Path, data: std::ops::Range<u64>, to: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut src = File::open(input).unwrap();
    src.seek(SeekFrom::Start(data.start)).unwrap();
    // A new file each time, as the compactor writes one (rewriting an
    // existing file in place is a different, cheaper job for the disk).
    let _ = fs::remove_file(to);
    let mut dst = File::create(to).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = data.end - data.start;
    while left > 0 {
        let n = buf.len().min(left as usize);
        src.read_exact(&mut buf[..n]).unwrap();
        dst.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    dst.sync_all().unwrap();
}

fn whole_process() {
    let mib: u64 = std::env::var("PTWALK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = std::env::temp_dir().join(format!("ptwalk-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let input = dir.join("guest.img");
    let (roots, data) = guest(&input, mib);
    let mut args = vec![
        "compact".to_string(),
        "--image".into(),
        input.display().to_string(),
        "-o".into(),
        dir.join("out").display().to_string(),
    ];
    for r in &roots {
        args.extend(["--root".into(), format!("{r:#x}")]);
    }
    // Best of four runs each, in rotating order (the disk is shared and noisy);
    // the peak RSS is the largest seen.
    let ptwalk = env!("CARGO_BIN_EXE_ptwalk");
    let best = |a: (Duration, i64), b: (Duration, i64)| (a.0.min(b.0), a.1.max(b.1));
    let (mut compact, mut verify, mut copy_time) =
        ((Duration::MAX, 0), (Duration::MAX, 0), Duration::MAX);
    let copy = dir.join("copy.img");
    for round in 0..4 {
        // Each goes first in some round: the disk's write-back of the
        // previous run's data must not always land on the same one.
        let mut steps: [u8; 3] = [0, 1, 2];
        steps.rotate_left(round % 3);
        for step in steps {
            match step {
                0 => compact = best(compact, measure(Command::new(ptwalk).args(&args))),
                1 => {
                    let mut with_verify = args.clone();
                    with_verify.push("--verify".into());
                    verify = best(verify, measure(Command::new(ptwalk).args(&with_verify)));
                }
                _ => {
                    let t = Instant::now();
                    plain_copy(&input, data.clone(), &copy);
                    copy_time = copy_time.min(t.elapsed());
                }
            }
        }
    }
    let ((compact_time, compact_rss), (verify_time, verify_rss)) = (compact, verify);
    let out_len = fs::metadata(dir.join("out.img")).unwrap().len();
    let in_len = fs::metadata(&input).unwrap().len();
    println!(
        "compact (whole process): {} MiB image, {} MiB output, 16 spaces: ptwalk compact {:.2} s \
         (peak RSS {} MiB), with --verify {:.2} s (peak RSS {} MiB); a plain copy of the {} MiB of data {:.2} s; \
         ratio (best compaction, verified or not, to the copy) {:.2}x",
        in_len >> 20,
        out_len >> 20,
        compact_time.as_secs_f64(),
        compact_rss >> 10,
        verify_time.as_secs_f64(),
        verify_rss >> 10,
        (data.end - data.start) >> 20,
        copy_time.as_secs_f64(),
        // A --verify run includes a whole compaction: its time bounds the
        // compaction's too (the disk's write-back makes single runs noisy).
        compact_time.min(verify_time).as_secs_f64() / copy_time.as_secs_f64()
    );
    if std::env::var_os("PTWALK_BENCH_KEEP").is_none() {
        fs::remove_dir_all(&dir).unwrap();
    } else {
        println!("kept {}", dir.display());
    }
}
