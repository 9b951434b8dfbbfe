//! `ptwalk roots`: candidate page-table roots in a dump, for a user who
//! has the memory and nothing else.
//!
//! Every page in memory is tried as a root table of the paging mode (i686
//! now: a page directory of 1024 four-byte entries). A page is *plausible* when it has present
//! entries, every present entry is well formed (a 4 MiB page aligned, with
//! its reserved bit clear, its frame in memory; a table in memory), and
//! the tables below are plausible (their present entries map frames in
//! memory, but for a few or a minority).
//!
//! With known roots (`--like`, and on a QEMU core the vCPUs' CR3s), a
//! candidate is a plausible page whose kernel half (entries 768..1023:
//! VAs from 3 GiB) matches a known root's: Linux copies the kernel's
//! directory entries into every process's directory and keeps them in
//! sync. Without known roots, a candidate is a plausible page that also
//! splits as an operating system with a 3 GiB user space does (at least
//! two present kernel-half entries; user-half entries, if any, all
//! user-accessible), in the largest group of such pages whose kernel
//! halves match (at least two), as the processes of one kernel share it
//! (`scan`: a heuristic; a kernel that does not share its half this way is
//! found only with `--like`).
//!
//! Other modes slot in beside the i686 tests here: their own root-table
//! shape (a PAE directory-pointer table at any 32-byte alignment, a
//! 512-entry top table), their own kernel half (entries 256..511 in long
//! mode), compared by contents where a kernel copies rather than shares
//! (PAE's kernel PMD under PTI), and PTI's 8 KiB pairs as `pair`.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use ptwalk::{I686, PhysAddr, PhysMem, Regions};
use serde_json::json;

use crate::dump::Dump;
use crate::input;

/// Pages scanned between two releases of the mapped file (64 MiB).
const RELEASE_PAGES: u64 = 1 << 14;

const P: u32 = 1;
const US: u32 = 1 << 2;
const PS: u32 = 1 << 7;
/// The first kernel-half entry (VA `0xC000_0000`).
const KERNEL: usize = 768;

/// How a candidate was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    /// A known root: the vCPUs whose CR3 it is (`cpu0,cpu3`), or `like`.
    Known(String),
    /// Its kernel half matches a known root's.
    Like,
    /// Plausible alone.
    Scan,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Known(s) => f.write_str(s),
            How::Like => f.write_str("like"),
            How::Scan => f.write_str("scan"),
        }
    }
}

/// One candidate root.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub root: PhysAddr,
    pub how: How,
    /// Present entries in the user half (0..768).
    pub user: u32,
    /// Present entries in the kernel half (768..1024).
    pub kernel: u32,
    /// Its page tables that another candidate's directory also points at.
    pub shared: u32,
}

/// What one root table says, decoded once.
struct Shape {
    entries: [u32; 1024],
    user: u32,
    kernel: u32,
}

/// The directory at `pa` if it is plausible (see the module docs).
fn plausible<M: PhysMem>(mem: &M, pa: u64, mode: I686) -> Option<Shape> {
    let bytes = mem.lend(PhysAddr(pa), 4096).ok()?;
    let mut entries = [0u32; 1024];
    let (mut user, mut kernel) = (0, 0);
    for (i, e) in entries.iter_mut().enumerate() {
        let v = u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().ok()?);
        *e = v;
        if v & P == 0 {
            continue;
        }
        if mode.pse && v & PS != 0 {
            // 4 MiB page: reserved bit 21 clear, frame in memory.
            if v & (1 << 21) != 0 {
                return None;
            }
            let frame = u64::from(v & 0xFFC0_0000) | (u64::from((v >> 13) & 0xFF) << 32);
            mem.lend(PhysAddr(frame), 1).ok()?;
        } else {
            mem.lend(PhysAddr(u64::from(v & 0xFFFF_F000)), 4096).ok()?;
        }
        if i < KERNEL {
            user += 1;
        } else {
            kernel += 1;
        }
    }
    if user + kernel == 0 {
        return None;
    }
    Some(Shape {
        entries,
        user,
        kernel,
    })
}

/// Whether the page table at `pa` maps frames in memory, but for a few
/// (device memory: a fixmap table maps the local APIC and I/O APIC) or a
/// minority: a page of data read as a table maps mostly outside memory.
fn table_plausible<M: PhysMem>(mem: &M, pa: u64) -> bool {
    let Ok(bytes) = mem.lend(PhysAddr(pa), 4096) else {
        return false;
    };
    let (mut present, mut inside) = (0u32, 0u32);
    for c in bytes.chunks_exact(4) {
        let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if v & P != 0 {
            present += 1;
            inside += u32::from(mem.lend(PhysAddr(u64::from(v & 0xFFFF_F000)), 1).is_ok());
        }
    }
    let outside = present - inside;
    outside <= 64 || 2 * inside >= present
}

/// The page tables a directory points at (not its large pages).
fn tables(s: &Shape, mode: I686) -> impl Iterator<Item = u32> + '_ {
    s.entries
        .iter()
        .filter(move |&&e| e & P != 0 && !(mode.pse && e & PS != 0))
        .map(|&e| e & 0xFFFF_F000)
}

/// Whether the candidate's kernel half matches the known root's: at least
/// 9 in 10 of the known root's present kernel entries are equal in the
/// candidate, and no present entry of both differs by more than the
/// accessed/dirty bits.
fn kernel_matches(c: &Shape, known: &Shape) -> bool {
    const AD: u32 = 0x60;
    let (mut equal, mut known_present) = (0u32, 0u32);
    for i in KERNEL..1024 {
        let (a, b) = (c.entries[i], known.entries[i]);
        if b & P != 0 {
            known_present += 1;
        }
        if a & P != 0 && b & P != 0 {
            if a & !AD != b & !AD {
                return false;
            }
            equal += 1;
        }
    }
    known_present > 0 && 10 * equal >= 9 * known_present
}

/// Splits as a 3 GiB user space would: kernel entries present, user
/// entries (if any) all user-accessible.
fn splits_like_an_os(s: &Shape) -> bool {
    s.kernel > 0
        && s.entries[..KERNEL]
            .iter()
            .all(|&e| e & P == 0 || e & US != 0)
}

/// Candidate roots in `dump` for `mode`: the `known` ones first (root,
/// label), in their order, then those found, by ascending PA.
pub fn find(
    dump: &Dump,
    mode: I686,
    known: &[(PhysAddr, String)],
    progress: bool,
) -> Vec<Candidate> {
    let images = dump.images();
    let Ok(mem) = Regions::new(&images) else {
        return Vec::new();
    };
    let known_shapes: Vec<Shape> = known
        .iter()
        .filter_map(|(r, _)| plausible(&mem, r.0, mode))
        .collect();
    let pages: u64 = dump.segments.iter().map(|s| s.len / 4096).sum();
    let bar = (progress && io::stderr().is_terminal() && pages > 1 << 16).then(|| {
        let b = ProgressBar::new(pages);
        if let Ok(st) =
            ProgressStyle::with_template("scanning {bar:30} {pos}/{len} pages {elapsed}")
        {
            b.set_style(st);
        }
        b
    });
    let mut found: Vec<(PhysAddr, How, Shape)> = Vec::new();
    for (r, label) in known {
        if let Some(s) = plausible(&mem, r.0, mode) {
            found.push((*r, How::Known(label.clone()), s));
        } else {
            // A known root is listed even when it looks odd.
            if let Ok(b) = mem.lend(*r, 4096) {
                let mut entries = [0u32; 1024];
                for (i, e) in entries.iter_mut().enumerate() {
                    *e = u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
                }
                let count = |r: &[u32]| r.iter().filter(|&&e| e & P != 0).count() as u32;
                let (user, kernel) = (count(&entries[..KERNEL]), count(&entries[KERNEL..]));
                found.push((
                    *r,
                    How::Known(label.clone()),
                    Shape {
                        entries,
                        user,
                        kernel,
                    },
                ));
            }
        }
    }
    let mut done = 0u64;
    for seg in &dump.segments {
        let first = seg.pa.div_ceil(4096) * 4096;
        let mut pa = first;
        while pa + 4096 <= seg.end() {
            done += 1;
            if let Some(b) = &bar {
                if done % 4096 == 0 {
                    b.set_position(done);
                }
            }
            let here = pa;
            pa += 4096;
            if done % RELEASE_PAGES == 0 {
                // Drop what the scan has read so far: the scan touches every
                // page once, and resident file pages would add up to the
                // dump's size.
                input::release(dump.bytes(), (seg.offset + (here - seg.pa)) as usize);
            }
            if known.iter().any(|(r, _)| r.0 == here) {
                continue;
            }
            let Some(shape) = plausible(&mem, here, mode) else {
                continue;
            };
            let how = if known_shapes.is_empty() {
                if !splits_like_an_os(&shape) {
                    continue;
                }
                How::Scan
            } else if known_shapes.iter().any(|k| kernel_matches(&shape, k)) {
                How::Like
            } else {
                continue;
            };
            if !tables(&shape, mode).all(|t| table_plausible(&mem, u64::from(t))) {
                continue;
            }
            found.push((PhysAddr(here), how, shape));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The scan alone: group the pages by kernel half and keep the largest
    // group (the processes of the dump's kernel share it); a page whose
    // kernel half no other repeats is more likely a stray table.
    if known_shapes.is_empty() {
        let mut group: Vec<usize> = Vec::with_capacity(found.len());
        let mut heads: Vec<usize> = Vec::new();
        for (i, (_, _, s)) in found.iter().enumerate() {
            let g = heads
                .iter()
                .position(|&h| s.kernel >= 2 && kernel_matches(s, &found[h].2));
            group.push(g.unwrap_or_else(|| {
                heads.push(i);
                heads.len() - 1
            }));
        }
        let size = |g: usize| group.iter().filter(|&&x| x == g).count();
        let best = (0..heads.len()).map(size).max().unwrap_or(0);
        let mut keep = group.iter().map(|&g| best >= 2 && size(g) == best);
        found.retain(|_| keep.next().unwrap_or(false));
    }
    // Sharing: how many candidates point at each table.
    let mut users: HashMap<u32, u32> = HashMap::new();
    for (_, _, s) in &found {
        let mut mine: Vec<u32> = tables(s, mode).collect();
        mine.sort_unstable();
        mine.dedup();
        for t in mine {
            *users.entry(t).or_default() += 1;
        }
    }
    let shared = |s: &Shape| {
        let mut mine: Vec<u32> = tables(s, mode).collect();
        mine.sort_unstable();
        mine.dedup();
        mine.iter().filter(|t| users[t] > 1).count() as u32
    };
    found
        .into_iter()
        .map(|(root, how, s)| Candidate {
            root,
            how,
            user: s.user,
            kernel: s.kernel,
            shared: shared(&s),
        })
        .collect()
}

/// `4 cpu, 9 like, 0 scan`.
pub fn summary(c: &[Candidate]) -> String {
    let n = |f: fn(&How) -> bool| c.iter().filter(|x| f(&x.how)).count();
    format!(
        "{} known, {} like, {} scan",
        n(|h| matches!(h, How::Known(_))),
        n(|h| *h == How::Like),
        n(|h| *h == How::Scan)
    )
}

/// How `ptwalk roots` prints candidates.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RootsFormat {
    /// `ROOT HOW USER KERNEL SHARED`, tab-separated, one per line.
    Tsv,
    /// One JSON object per line.
    Json,
}

/// Prints the candidates.
pub fn print(c: &[Candidate], format: RootsFormat, out: &mut impl Write) -> io::Result<()> {
    for x in c {
        match format {
            RootsFormat::Tsv => writeln!(
                out,
                "{:#x}\t{}\t{}\t{}\t{}",
                x.root.0, x.how, x.user, x.kernel, x.shared
            )?,
            RootsFormat::Json => writeln!(
                out,
                "{}",
                json!({
                    "root": format!("{:#x}", x.root.0),
                    "how": x.how.to_string(),
                    "user": x.user,
                    "kernel": x.kernel,
                    "shared": x.shared,
                })
            )?,
        }
    }
    Ok(())
}
