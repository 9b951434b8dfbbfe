//! `ptwalk roots`: candidate page-table roots in a dump, for a user who
//! has the memory and nothing else, in every paging mode.
//!
//! Every place a root table of the mode can sit is tried: each page for an
//! i686 page directory (1024 four-byte entries) and for an x86-64 PML4 or
//! PML5 (512 eight-byte entries), each 32-byte slot for a PAE
//! page-directory-pointer table (4 entries: Linux without PTI allocates
//! them as 32-byte slab objects). A root table is *plausible* when it has
//! present entries, the mode decodes every present entry as a table or a
//! page (no reserved bit set, a large page aligned), each named table
//! lies in memory and each named page starts in it, and the tables one
//! level below are plausible too: their present entries decode and name
//! frames in memory, but for a few or a minority (a fixmap table maps the
//! local APIC and I/O APIC outside RAM), and not all of them are empty (a
//! page table of user pages over frames of zeros is no root).
//!
//! The *kernel half* of a root is what maps the VAs from 3 GiB in the
//! 32-bit modes (i686 entries 768..1024, PAE entry 3) and the upper,
//! negative half in long mode (entries 256..512 of a PML4 or PML5).
//! Kernels copy it into every process's root table and keep it in sync,
//! so a process's root is recognised by it. Halves are compared by the
//! entries' contents in i686 and long mode; a PAE kernel half is one
//! pointer to a page-middle directory, which Linux shares without PTI but
//! *copies* per process with PTI, so PAE compares the contents of the
//! directory it points at.
//!
//! With known roots (`--like`, and on a QEMU core the vCPUs' CR3s), a
//! candidate is a plausible root whose kernel half matches a known root's
//! (`like`): at least 9 in 10 of the known root's present kernel entries
//! are equal in it (accessed and dirty bits aside) and at most 1 in 10
//! differ. Without known roots, a candidate is a plausible root that also
//! splits as an operating system does (user-half entries, if any, all
//! user-accessible; a kernel half with present entries), in the largest
//! group of such roots whose kernel halves match (at least two), as the
//! processes of one kernel share it (`scan`: a heuristic; a kernel that
//! does not share its half this way is found only with `--like`).
//!
//! With page-table isolation (PTI, which needs PAE or long mode) a
//! process has two roots in an 8 KiB-aligned pair: the kernel's at +0,
//! the user-mode one at +0x1000, whose user halves are the same tables
//! but whose kernel halves differ (the user one maps little more than
//! the entry trampoline). So in the 8-byte-entry modes, the other page of
//! each candidate's pair is a candidate too (`pair`) when it is plausible,
//! has the same user half (NX aside: Linux sets it on the kernel copy's
//! user entries) and a different kernel half.

use std::collections::{HashMap, HashSet};
use std::io::{self, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use ptwalk::mode::{Entry, TABLE_BYTES};
use ptwalk::{Level, PagingMode, PhysAddr, PhysMem, Regions};
use serde_json::json;

use crate::dump::Dump;
use crate::input;

/// Pages scanned between two releases of the mapped file (64 MiB).
const RELEASE_PAGES: u64 = 1 << 14;

/// The present bit, bit 0 of every x86 entry format.
const PRESENT: u64 = 1;
/// The accessed and dirty bits (5, 6), which the hardware sets in one
/// copy of an entry and not in another.
const AD: u64 = 0x60;
/// NX (bit 63): Linux's PTI sets it on the kernel root's user entries.
const NX: u64 = 1 << 63;
/// The first VA of the kernel half in the 32-bit modes (a 3G/1G split).
const KERNEL_VA_32: u64 = 0xC000_0000;
/// A page of zeros.
const ZEROS: &[u8] = &[0; 4096];
/// The distance between the two roots of a PTI pair.
const PAIR: u64 = 0x1000;

/// How a candidate was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    /// A known root: the vCPUs whose CR3 it is (`cpu0,cpu3`), or `like`.
    Known(String),
    /// Its kernel half matches a known root's.
    Like,
    /// The other root of another candidate's PTI pair.
    Pair,
    /// Plausible alone.
    Scan,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Known(s) => f.write_str(s),
            How::Like => f.write_str("like"),
            How::Pair => f.write_str("pair"),
            How::Scan => f.write_str("scan"),
        }
    }
}

/// One candidate root.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The root table's physical address.
    pub root: PhysAddr,
    /// How it was found.
    pub how: How,
    /// Present entries in the user half.
    pub user: u32,
    /// Present entries in the kernel half.
    pub kernel: u32,
    /// Its tables (one level below the root) that another candidate's
    /// root also points at.
    pub shared: u32,
}

/// What a mode's root table looks like.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    /// The root's level.
    level: Level,
    /// Bytes of a root table (and its alignment): 32 for PAE, else 4096.
    bytes: usize,
    /// Entries in a root table.
    entries: usize,
    /// The first kernel-half entry.
    kernel: usize,
    /// Whether roots come in PTI pairs (the 8-byte-entry modes).
    pairs: bool,
}

impl Geometry {
    fn of<P: PagingMode>(mode: P) -> Geometry {
        let level = mode.root_level();
        let entries = P::entries(level);
        let kernel = if P::CANONICAL {
            entries / 2
        } else {
            (KERNEL_VA_32 >> P::shift(level)) as usize
        };
        Geometry {
            level,
            bytes: P::table_bytes(level),
            entries,
            kernel,
            pairs: P::ENTRY_BYTES == 8,
        }
    }
}

/// What one root table says, decoded once.
#[derive(Clone, Debug)]
struct Shape {
    /// The raw entries.
    entries: Vec<u64>,
    /// The tables one level below (addresses of present table entries).
    tables: Vec<u64>,
    user: u32,
    kernel: u32,
}

/// The scan's state: memory, mode, and which lower tables were judged.
struct Scanner<'a, P: PagingMode, M: PhysMem> {
    mem: &'a M,
    mode: P,
    g: Geometry,
    /// The tables one level below a root judged so far: their present
    /// entries if plausible.
    below: HashMap<u64, Option<u32>>,
}

impl<'a, P: PagingMode, M: PhysMem> Scanner<'a, P, M> {
    fn new(mem: &'a M, mode: P) -> Self {
        Scanner {
            mem,
            mode,
            g: Geometry::of(mode),
            below: HashMap::new(),
        }
    }

    /// The root table at `pa` as it is, if it can be read: its entries and
    /// counts, whatever they hold (a known root is listed even when it
    /// looks odd).
    fn read(&self, pa: u64) -> Option<Shape> {
        let bytes = self.mem.lend(PhysAddr(pa), self.g.bytes).ok()?;
        let entries: Vec<u64> = (0..self.g.entries).map(|i| P::load(bytes, i)).collect();
        let mut s = Shape {
            entries,
            tables: Vec::new(),
            user: 0,
            kernel: 0,
        };
        for (i, &raw) in s.entries.iter().enumerate() {
            match self.mode.decode(raw, self.g.level) {
                Entry::Absent => continue,
                Entry::Table(t) => s.tables.push(t.0),
                Entry::Page(_) | Entry::Reserved(_) => {}
            }
            if i < self.g.kernel {
                s.user += 1;
            } else {
                s.kernel += 1;
            }
        }
        Some(s)
    }

    /// The root table at `pa` if it is plausible by itself: present
    /// entries, each a table in memory or a page starting in memory.
    fn plausible(&self, pa: u64) -> Option<Shape> {
        let bytes = self.mem.lend(PhysAddr(pa), self.g.bytes).ok()?;
        // Most places hold no root: reject them before allocating.
        let mut any = false;
        for i in 0..self.g.entries {
            let raw = P::load(bytes, i);
            match self.mode.decode(raw, self.g.level) {
                Entry::Absent => {}
                Entry::Reserved(_) => return None,
                Entry::Table(t) => {
                    self.mem.lend(t, TABLE_BYTES).ok()?;
                    any = true;
                }
                Entry::Page(f) => {
                    self.mem.lend(f, 1).ok()?;
                    any = true;
                }
            }
        }
        if !any {
            return None;
        }
        self.read(pa)
    }

    /// Whether every table `s` points at is plausible and, if it points
    /// at any, one of them maps something (see the module docs); each
    /// lower table is judged once.
    fn below_plausible(&mut self, s: &Shape) -> bool {
        let below = Level(self.g.level.0 - 1);
        let mut mapping = s.tables.is_empty();
        for &t in &s.tables {
            let judged = match self.below.get(&t) {
                Some(&j) => j,
                None => {
                    let j = table_plausible(self.mem, self.mode, t, below);
                    self.below.insert(t, j);
                    j
                }
            };
            match judged {
                None => return false,
                Some(present) => mapping |= present > 0,
            }
        }
        mapping
    }

    /// What the kernel half says, to compare with another root's: the
    /// kernel entries themselves, or in PAE the entries of the
    /// page-middle directories they point at (zero where one is absent).
    fn view(&self, s: &Shape) -> Vec<u64> {
        let half = &s.entries[self.g.kernel..];
        if self.g.bytes == TABLE_BYTES {
            return half.to_vec();
        }
        let below = Level(self.g.level.0 - 1);
        let n = P::entries(below);
        let mut v = Vec::with_capacity(half.len() * n);
        for &raw in half {
            let table = match self.mode.decode(raw, self.g.level) {
                Entry::Table(t) => self.mem.lend(t, TABLE_BYTES).ok(),
                _ => None,
            };
            match table {
                Some(b) => v.extend((0..n).map(|i| P::load(b, i))),
                None => v.extend(std::iter::repeat_n(0, n)),
            }
        }
        v
    }

    /// Splits as an operating system's root does: kernel entries present,
    /// user entries (if any) all user-accessible.
    fn splits_like_an_os(&self, s: &Shape) -> bool {
        s.kernel > 0
            && s.entries[..self.g.kernel]
                .iter()
                .all(|&raw| raw & PRESENT == 0 || self.mode.access(raw, self.g.level).user())
    }
}

/// The present entries of the table at `pa`, at `level`, if it is
/// plausible: its entries decode to frames in memory, but for a few
/// (device memory) or a minority (a page of data read as a table names
/// mostly frames outside memory, or sets reserved bits).
fn table_plausible<P: PagingMode, M: PhysMem>(
    mem: &M,
    mode: P,
    pa: u64,
    level: Level,
) -> Option<u32> {
    let bytes = mem.lend(PhysAddr(pa), TABLE_BYTES).ok()?;
    let (mut present, mut inside) = (0u32, 0u32);
    for i in 0..P::entries(level) {
        let frame = match mode.decode(P::load(bytes, i), level) {
            Entry::Absent => continue,
            Entry::Reserved(_) => None,
            Entry::Table(f) | Entry::Page(f) => Some(f),
        };
        present += 1;
        inside += u32::from(frame.is_some_and(|f| mem.lend(f, 1).is_ok()));
    }
    let outside = present - inside;
    (outside <= 64 || 2 * inside >= present).then_some(present)
}

/// Whether kernel half `c` matches the known `known` (see the module
/// docs): at least 9 in 10 of the known half's present entries are equal
/// in `c`, at most 1 in 10 differ.
fn kernel_matches(c: &[u64], known: &[u64]) -> bool {
    let (mut equal, mut differ, mut known_present) = (0u32, 0u32, 0u32);
    for (&a, &b) in c.iter().zip(known) {
        if b & PRESENT == 0 {
            continue;
        }
        known_present += 1;
        if a & PRESENT != 0 {
            if a & !AD == b & !AD {
                equal += 1;
            } else {
                differ += 1;
            }
        }
    }
    known_present > 0 && 10 * equal >= 9 * known_present && 10 * differ <= known_present
}

/// Present entries in a kernel-half view.
fn present(v: &[u64]) -> usize {
    v.iter().filter(|&&e| e & PRESENT != 0).count()
}

/// Candidate roots in `dump` for `mode`: the `known` ones first (root
/// table, label), in their order, then those found, by ascending PA.
pub fn find<P: PagingMode>(
    dump: &Dump,
    mode: P,
    known: &[(PhysAddr, String)],
    progress: bool,
) -> Vec<Candidate> {
    let images = dump.images();
    let Ok(mem) = Regions::new(&images) else {
        return Vec::new();
    };
    let mut sc = Scanner::new(&mem, mode);
    let g = sc.g;
    let mut found: Vec<(PhysAddr, How, Shape)> = Vec::new();
    let mut known_views: Vec<Vec<u64>> = Vec::new();
    for (r, label) in known {
        // A known root is listed even when it looks odd.
        if let Some(s) = sc.read(r.0) {
            known_views.push(sc.view(&s));
            found.push((*r, How::Known(label.clone()), s));
        }
    }
    known_views.retain(|v| present(v) > 0);
    let is_known: HashSet<u64> = known.iter().map(|(r, _)| r.0).collect();

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
    let mut done = 0u64;
    for seg in &dump.segments {
        let mut page = seg.pa.div_ceil(4096) * 4096;
        while page + 4096 <= seg.end() {
            done += 1;
            if let Some(b) = &bar {
                if done % 4096 == 0 {
                    b.set_position(done);
                }
            }
            let here = page;
            page += 4096;
            if done % RELEASE_PAGES == 0 {
                // Drop what the scan has read so far: the scan touches every
                // page once, and resident file pages would add up to the
                // dump's size.
                input::release(dump.bytes(), (seg.offset + (here - seg.pa)) as usize);
            }
            let Ok(bytes) = mem.lend(PhysAddr(here), 4096) else {
                continue;
            };
            // A page without a present bit (bit 0 of each entry) is no root
            // at any offset; zero pages, the most common, go by memcmp.
            if bytes == ZEROS || !bytes.chunks_exact(P::ENTRY_BYTES).any(|e| e[0] & 1 != 0) {
                continue;
            }
            for at in (here..here + 4096).step_by(g.bytes) {
                if is_known.contains(&at) {
                    continue;
                }
                let Some(shape) = sc.plausible(at) else {
                    continue;
                };
                let how = if known_views.is_empty() {
                    if !sc.splits_like_an_os(&shape) {
                        continue;
                    }
                    How::Scan
                } else {
                    let v = sc.view(&shape);
                    if !known_views.iter().any(|k| kernel_matches(&v, k)) {
                        continue;
                    }
                    How::Like
                };
                if !sc.below_plausible(&shape) {
                    continue;
                }
                found.push((PhysAddr(at), how, shape));
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The scan alone: group the roots by kernel half and keep the largest
    // group (the processes of the dump's kernel share it); a root whose
    // kernel half no other repeats is more likely a stray table.
    if known_views.is_empty() {
        // Known roots are listed whatever their group.
        let n_known = found.len() - found.iter().filter(|f| f.1 == How::Scan).count();
        let views: Vec<Vec<u64>> = found[n_known..]
            .iter()
            .map(|(_, _, s)| sc.view(s))
            .collect();
        let mut group: Vec<usize> = Vec::with_capacity(found.len());
        let mut heads: Vec<usize> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for v in &views {
            let g = heads
                .iter()
                .position(|&h| present(v) >= 2 && kernel_matches(v, &views[h]));
            let g = g.unwrap_or_else(|| {
                heads.push(group.len());
                sizes.push(0);
                heads.len() - 1
            });
            sizes[g] += 1;
            group.push(g);
        }
        let best = sizes.iter().copied().max().unwrap_or(0);
        let mut keep = std::iter::repeat_n(true, n_known)
            .chain(group.iter().map(|&g| best >= 2 && sizes[g] == best));
        found.retain(|_| keep.next().unwrap_or(false));
    }
    if g.pairs {
        let pairs = pairs(&mut sc, &found);
        found.extend(pairs);
    }
    let n_known = found
        .iter()
        .filter(|(_, h, _)| matches!(h, How::Known(_)))
        .count();
    found[n_known..].sort_by_key(|(r, _, _)| r.0);
    // Sharing: how many candidates point at each table.
    let mut users: HashMap<u64, u32> = HashMap::new();
    let mine = |s: &Shape| {
        let mut t = s.tables.clone();
        t.sort_unstable();
        t.dedup();
        t
    };
    for (_, _, s) in &found {
        for t in mine(s) {
            *users.entry(t).or_default() += 1;
        }
    }
    found
        .into_iter()
        .map(|(root, how, s)| Candidate {
            root,
            how,
            user: s.user,
            kernel: s.kernel,
            shared: mine(&s).iter().filter(|t| users[t] > 1).count() as u32,
        })
        .collect()
}

/// The other roots of the candidates' PTI pairs (see the module docs)
/// that are not candidates already.
fn pairs<P: PagingMode, M: PhysMem>(
    sc: &mut Scanner<'_, P, M>,
    found: &[(PhysAddr, How, Shape)],
) -> Vec<(PhysAddr, How, Shape)> {
    let k = sc.g.kernel;
    let mut have: HashSet<u64> = found.iter().map(|(r, _, _)| r.0).collect();
    let mut out = Vec::new();
    for (r, _, s) in found {
        // Only a root with user entries: their tables are what the two
        // roots of a pair share (a page beside a lone kernel root that
        // happens to hold other kernel entries is no pair).
        if r.0 % 4096 != 0 || s.user == 0 {
            continue;
        }
        let other = r.0 ^ PAIR;
        if have.contains(&other) {
            continue;
        }
        let Some(o) = sc.plausible(other) else {
            continue;
        };
        let same_user = s.entries[..k]
            .iter()
            .zip(&o.entries[..k])
            .all(|(&a, &b)| a & !(AD | NX) == b & !(AD | NX));
        let (va, vb) = (sc.view(s), sc.view(&o));
        let same_kernel = va.iter().zip(&vb).all(|(&a, &b)| a & !AD == b & !AD);
        if same_user && !same_kernel && sc.below_plausible(&o) {
            have.insert(other);
            out.push((PhysAddr(other), How::Pair, o));
        }
    }
    out
}

/// `4 known, 9 like, 0 scan` (and `, 8 pair` when there are pairs).
pub fn summary(c: &[Candidate]) -> String {
    let n = |f: fn(&How) -> bool| c.iter().filter(|x| f(&x.how)).count();
    let pairs = n(|h| *h == How::Pair);
    format!(
        "{} known, {} like, {} scan{}",
        n(|h| matches!(h, How::Known(_))),
        n(|h| *h == How::Like),
        n(|h| *h == How::Scan),
        if pairs > 0 {
            format!(", {pairs} pair")
        } else {
            String::new()
        }
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

#[cfg(test)]
mod tests {
    //! `find` in every mode: small images built here, and the real guests'
    //! extracts (`tests/fixtures/guests/<name>/`: every root's tables, on
    //! an image of zeros as large as the guest's memory).

    use std::collections::BTreeSet;
    use std::io::Read;
    use std::path::PathBuf;

    use ptwalk::{I686, Pae, X86_64};

    use super::*;

    const PS: u64 = 0x80;

    /// A scratch directory for this test's files.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ptwalk-roots-{}-{name}.d", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Memory being built: 8-byte or 4-byte entries put by table and index.
    struct Img(Vec<u8>);

    impl Img {
        fn new(len: usize) -> Img {
            Img(vec![0; len])
        }
        fn put(&mut self, table: u64, i: usize, raw: u64) {
            let at = table as usize + 8 * i;
            self.0[at..at + 8].copy_from_slice(&raw.to_le_bytes());
        }
        fn put32(&mut self, table: u64, i: usize, raw: u32) {
            let at = table as usize + 4 * i;
            self.0[at..at + 4].copy_from_slice(&raw.to_le_bytes());
        }
        /// A page of pseudo-random bytes, and the next page of small odd
        /// numbers (each a present entry naming frame 0, a page of zeros).
        fn garbage(&mut self, page: u64) {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for i in 0..512 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.put(page, i, x);
            }
            for i in 0..1024 {
                self.put32(page + 0x1000, i, 2 * i as u32 + 1);
            }
        }
        fn dump(&self, name: &str) -> (Dump, PathBuf) {
            let dir = scratch(name);
            let path = dir.join("mem.raw");
            std::fs::write(&path, &self.0).unwrap();
            (Dump::open(&path, None).unwrap(), dir)
        }
    }

    fn known(r: u64) -> Vec<(PhysAddr, String)> {
        vec![(PhysAddr(r), "like".to_string())]
    }

    /// (root, how) of each candidate, in order.
    fn hows(c: &[Candidate]) -> Vec<(u64, String)> {
        c.iter().map(|c| (c.root.0, c.how.to_string())).collect()
    }

    fn pairs_of(v: &[(u64, &str)]) -> Vec<(u64, String)> {
        v.iter().map(|&(r, h)| (r, h.to_string())).collect()
    }

    #[test]
    fn i686_directories_share_their_kernel_half() {
        let mut m = Img::new(0x10_0000);
        let (kpt, upt) = (0x1000, 0x2000);
        m.put32(kpt, 0, 0x3000 | 3);
        m.put32(upt, 5, 0x4000 | 7);
        for d in [0x10000u64, 0x11000, 0x13000] {
            m.put32(d, 0x300, kpt as u32 | 3);
            m.put32(d, 0x301, 3 | PS as u32);
            m.put32(d, 1, upt as u32 | 7);
        }
        m.garbage(0x20000);
        let (dump, dir) = m.dump("small-i686");
        let mode = I686 { pse: true };
        let want = pairs_of(&[(0x10000, "like"), (0x11000, "like"), (0x13000, "like")]);
        let like = find(&dump, mode, &known(0x11000), false);
        assert_eq!(hows(&like), [&want[1..2], &want[..1], &want[2..]].concat());
        // Both halves counted; the kernel's table and the user table are
        // shared by all three (the 4 MiB page is no table).
        assert_eq!((like[0].user, like[0].kernel, like[0].shared), (1, 2, 2));
        let scan = find(&dump, mode, &[], false);
        let want: Vec<_> = want.iter().map(|(r, _)| (*r, "scan".to_string())).collect();
        assert_eq!(hows(&scan), want);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pae_pdpts_are_found_at_any_32_byte_slot_and_compared_by_contents() {
        let mut m = Img::new(0x10_0000);
        // The kernel's PMD: a 2 MiB page and a page table; a per-process
        // copy of it (as PTI makes); a PMD that differs.
        let (kpmd, copy, other, kpt) = (0x1000, 0x2000, 0x3000, 0x4000);
        m.put(kpt, 0, 0x5000 | 3);
        for pmd in [kpmd, copy, other] {
            m.put(pmd, 0, 0x0020_0000 | 3 | PS);
            m.put(pmd, 1, kpt | 3);
            m.put(pmd, 2, 0x0040_0000 | 3 | PS);
        }
        m.put(other, 2, 0x0060_0000 | 3 | PS);
        m.put(other, 3, 0x0080_0000 | 3 | PS);
        // User PMDs, each with a page table.
        let upt = 0x6000;
        m.put(upt, 7, 0x8000 | 7);
        for u in [0x7000u64, 0x9000, 0xA000] {
            m.put(u, 0, upt | 7);
        }
        // Four PDPTs: page aligned, at 0x20 and 0x60 in a page (slab
        // objects), and a last one whose kernel PMD differs.
        let roots = [
            (0x10000u64, 0x7000u64, kpmd),
            (0x11020, 0x9000, kpmd),
            (0x11060, 0xA000, copy),
            (0x110A0, 0xA000, other),
        ];
        for (r, u, k) in roots {
            m.put(r, 0, u | 1);
            m.put(r, 3, k | 1);
        }
        m.garbage(0x20000);
        let (dump, dir) = m.dump("small-pae");
        let mode = Pae::default();
        let like = find(&dump, mode, &known(0x10000), false);
        assert_eq!(
            hows(&like),
            pairs_of(&[(0x10000, "like"), (0x11020, "like"), (0x11060, "like")])
        );
        assert_eq!((like[1].user, like[1].kernel, like[1].shared), (1, 1, 1));
        // 0x11060 and 0x110A0 share a user PMD, not shown: 0x110A0 is no
        // candidate, so 0x11060 shares nothing.
        assert_eq!(like[2].shared, 0);
        // The scan groups the three whose kernel PMDs hold the same.
        let scan = find(&dump, mode, &[], false);
        assert_eq!(
            hows(&scan),
            pairs_of(&[(0x10000, "scan"), (0x11020, "scan"), (0x11060, "scan")])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Two processes' PTI pairs (kernel root at +0, user root at +0x1000)
    /// for `levels` (4 or 5), and a garbage page.
    fn pti_image(levels: u8) -> Img {
        let mut m = Img::new(0x10_0000);
        // Below the top: one table per top entry, each mapping a 1 GiB page
        // (or, one level lower, a table) so that nothing below is empty.
        let t = |m: &mut Img, at: u64, to: u64| m.put(at, 0, to | 7);
        let (kdir, kdir2, tramp, udir) = (0x1000, 0x2000, 0x3000, 0x4000);
        for d in [kdir, kdir2, tramp, udir] {
            if levels == 4 {
                m.put(d, 0, 0x4000_0000 | 3 | PS);
            } else {
                t(&mut m, d, 0x5000);
            }
        }
        m.put(0x5000, 0, 0x4000_0000 | 3 | PS);
        for (k, u) in [(0x10000u64, 0x11000u64), (0x14000, 0x15000)] {
            // The kernel root: the kernel half, and the user half with NX.
            m.put(k, 256, kdir | 3);
            m.put(k, 300, kdir2 | 3);
            m.put(k, 0, udir | 7 | NX);
            // The user root: the same user half, only the trampoline above.
            m.put(u, 0, udir | 7);
            m.put(u, 510, tramp | 3);
        }
        m.garbage(0x20000);
        m
    }

    fn pti_pairs<P: PagingMode>(mode: P, levels: u8) {
        let (dump, dir) = pti_image(levels).dump(&format!("pti{levels}"));
        // Known: the first user root; the other user root is like it, the
        // kernel roots are their pairs.
        let from_user = find(&dump, mode, &known(0x11000), false);
        assert_eq!(
            hows(&from_user),
            pairs_of(&[
                (0x11000, "like"),
                (0x10000, "pair"),
                (0x14000, "pair"),
                (0x15000, "like")
            ])
        );
        assert_eq!((from_user[1].user, from_user[1].kernel), (1, 2));
        assert_eq!((from_user[0].user, from_user[0].kernel), (1, 1));
        // The user table (shared by all four) and the kernel's two (by the
        // two kernel roots); the trampoline's by the two user roots.
        let shared: Vec<u32> = from_user.iter().map(|c| c.shared).collect();
        assert_eq!(shared, [2, 3, 3, 2]);
        let from_kernel = find(&dump, mode, &known(0x14000), false);
        assert_eq!(
            hows(&from_kernel),
            pairs_of(&[
                (0x14000, "like"),
                (0x10000, "like"),
                (0x11000, "pair"),
                (0x15000, "pair")
            ])
        );
        assert!(
            summary(&from_kernel).ends_with(", 2 pair"),
            "{}",
            summary(&from_kernel)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn x86_64_pti_pairs_are_found_from_either_root() {
        pti_pairs(X86_64::default(), 4);
    }

    #[test]
    fn la57_pti_pairs_are_found_from_either_root() {
        pti_pairs(X86_64::LA57, 5);
    }

    #[test]
    fn garbage_is_no_candidate_in_any_mode() {
        // Garbage alone, given as the known root: only itself comes back,
        // and the scan finds nothing.
        let mut m = Img::new(0x10_0000);
        m.garbage(0x20000);
        m.garbage(0x40000);
        let (dump, dir) = m.dump("garbage");
        fn check<P: PagingMode>(dump: &Dump, mode: P) {
            for page in [0x20000, 0x21000] {
                let c = find(dump, mode, &known(page), false);
                assert_eq!(hows(&c), pairs_of(&[(page, "like")]), "{mode:?}");
            }
            assert!(find(dump, mode, &[], false).is_empty(), "{mode:?}");
        }
        check(&dump, I686 { pse: true });
        check(&dump, I686 { pse: false });
        check(&dump, Pae::default());
        check(&dump, X86_64::default());
        check(&dump, X86_64::LA57);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A real guest's extract: (meta.json, image path, scratch dir).
    fn guest(name: &str) -> (serde_json::Value, Dump, PathBuf) {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guests");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures.join(name).join("meta.json")).unwrap())
                .unwrap();
        let gz = std::fs::read(fixtures.join(name).join("tables.bin.gz")).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len() % 4104, 0, "{name}: whole records");
        // A sparse file as large as the guest's memory, the tables in place.
        let dir = scratch(name);
        let path = dir.join("mem.raw");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(meta["memory_bytes"].as_u64().unwrap()).unwrap();
        for rec in raw.chunks_exact(4104) {
            let pa = u64::from_le_bytes(rec[..8].try_into().unwrap());
            std::os::unix::fs::FileExt::write_all_at(&f, &rec[8..], pa).unwrap();
        }
        drop(f);
        (meta, Dump::open(&path, None).unwrap(), dir)
    }

    fn hex(v: &serde_json::Value) -> u64 {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    /// Every root the guest's vCPUs and PTI pairs name is found, from the
    /// first vCPU's root alone, from every vCPU's (as on a QEMU core) and
    /// by the scan with nothing known; nothing else is (the extract holds
    /// only tables). Under PTI, one root of each pair is `pair`.
    fn every_root_of<P: PagingMode>(name: &str, mode: P) {
        let (meta, dump, dir) = guest(name);
        let want: BTreeSet<u64> = meta["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| hex(&r["pa"]))
            .collect();
        let pti = meta["pti"].as_bool().unwrap();
        let vcpus: Vec<u64> = meta["vcpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| mode.root_table(PhysAddr(hex(&v["cr3"]))).0)
            .collect();
        let mut cpus: Vec<(PhysAddr, String)> = Vec::new();
        for (i, &r) in vcpus.iter().enumerate() {
            if !cpus.iter().any(|(k, _)| k.0 == r) {
                cpus.push((PhysAddr(r), format!("cpu{i}")));
            }
        }
        let runs = [
            ("like", find(&dump, mode, &known(vcpus[0]), false)),
            ("cpus", find(&dump, mode, &cpus, false)),
            ("scan", find(&dump, mode, &[], false)),
        ];
        for (what, c) in &runs {
            let got: BTreeSet<u64> = c.iter().map(|c| c.root.0).collect();
            assert_eq!(got, want, "{name} {what}: {:?}", hows(c));
            assert_eq!(got.len(), c.len(), "{name} {what}: no root twice");
            let pairs = c.iter().filter(|c| c.how == How::Pair).count();
            if *what != "scan" {
                assert_eq!(pairs, if pti { want.len() / 2 } else { 0 }, "{name} {what}");
            }
            for p in c.iter().filter(|c| c.how == How::Pair) {
                let other = c.iter().find(|o| o.root.0 == p.root.0 ^ PAIR).unwrap();
                assert_ne!(other.how, How::Pair, "{name} {what}");
            }
        }
        // The vCPUs' roots come first, in vCPU order, with their labels.
        let first: Vec<(u64, String)> = cpus.iter().map(|(r, l)| (r.0, l.clone())).collect();
        assert_eq!(hows(&runs[1].1)[..cpus.len()], first[..], "{name}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn i686_guest_every_root_is_found() {
        every_root_of("i686", I686 { pse: true });
    }

    #[test]
    fn pae_guest_every_root_is_found() {
        every_root_of("pae", Pae::default());
    }

    #[test]
    fn x86_64_pti_guest_every_root_is_found() {
        every_root_of("x86_64-pti", X86_64::default());
    }

    #[test]
    fn la57_guest_every_root_is_found() {
        every_root_of("x86_64-la57", X86_64::LA57);
    }
}
