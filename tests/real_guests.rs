//! Real guests are the judge: page tables taken from Debian Linux guests
//! paused under QEMU (`scripts/guests/make_guests.py`), walked by ptwalk and
//! rendered in exactly the format of QEMU's own `info tlb` and `info mem`,
//! then compared line for line with the text QEMU printed for each vCPU.
//!
//! The fixtures in `tests/fixtures/guests/<name>/` hold only the page-table
//! pages reached from the vCPUs' CR3s (`tables.bin.gz`: records of a u64
//! little-endian physical address and the page's 4096 bytes), `meta.json`
//! (mode and per-vCPU CR0/CR3/CR4/EFER) and QEMU's gzip'd monitor output.
//! Leaf frames are not in the extract: the walker never reads them.
//!
//! All roots are walked together with an owner index, following aliases,
//! so every vCPU space after the first reaches the kernel's page tables
//! through aliases, and its rendering must still be QEMU's. A missing
//! fixture fails the test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use flate2::read::GzDecoder;
use ptwalk::{
    I686, Image, Leaf, OwnerIndex, OwnerSlot, PhysAddr, Regions, Walk, WalkEvent, WalkExt,
};

/// The i686 fixtures (32-bit paging).
const I686_GUESTS: &[&str] = &["i686"];

/// The fixtures walked and compared with QEMU here.
const COMPARED: &[&str] = &["i686"];

/// Every fixture: the PAE and x86-64 ones wait for their paging modes, and
/// are only checked to be whole.
const ALL_GUESTS: &[&str] = &["i686", "pae", "x86_64-pti", "x86_64-la57"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/guests")
        .join(name)
}

fn read_gz(name: &str, file: &str) -> Vec<u8> {
    let path = dir(name).join(file);
    let f = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()));
    let mut out = Vec::new();
    GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()));
    out
}

fn read_text(name: &str, file: &str) -> String {
    String::from_utf8(read_gz(name, file)).expect("QEMU's monitor text is UTF-8")
}

fn hex(v: &serde_json::Value) -> u64 {
    let s = v.as_str().expect("meta.json numbers are hex strings");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("a hex number")
}

/// One vCPU's control registers.
struct Vcpu {
    index: usize,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
}

struct Guest {
    name: &'static str,
    meta: serde_json::Value,
    vcpus: Vec<Vcpu>,
    /// Every root in `meta.json` (the vCPUs' CR3s and, under PTI, the other
    /// half of each PGD pair), in its order.
    roots: Vec<PhysAddr>,
    /// The table pages, merged into contiguous images sorted by address.
    images: Vec<Image<Vec<u8>>>,
    table_pages: usize,
}

fn read_meta(name: &str) -> serde_json::Value {
    let meta_path = dir(name).join("meta.json");
    serde_json::from_slice(
        &std::fs::read(&meta_path)
            .unwrap_or_else(|e| panic!("fixture {} missing: {e}", meta_path.display())),
    )
    .expect("meta.json parses")
}

/// `tables.bin.gz`: the table pages by physical address.
fn read_tables(name: &str) -> BTreeMap<u64, Vec<u8>> {
    let raw = read_gz(name, "tables.bin.gz");
    assert_eq!(
        raw.len() % (8 + 4096),
        0,
        "{name}: tables.bin.gz is whole records"
    );
    let mut pages = BTreeMap::new();
    for rec in raw.chunks_exact(8 + 4096) {
        let pa = u64::from_le_bytes(rec[..8].try_into().unwrap());
        assert_eq!(
            pa % 4096,
            0,
            "{name}: record at {pa:#x} is not page-aligned"
        );
        assert!(
            pages.insert(pa, rec[8..].to_vec()).is_none(),
            "{name}: page {pa:#x} twice"
        );
    }
    pages
}

fn load(name: &'static str) -> Guest {
    let meta = read_meta(name);
    let vcpus: Vec<Vcpu> = meta["vcpus"]
        .as_array()
        .expect("vcpus")
        .iter()
        .map(|v| Vcpu {
            index: usize::try_from(v["index"].as_u64().expect("index")).unwrap(),
            cr0: hex(&v["cr0"]),
            cr3: hex(&v["cr3"]),
            cr4: hex(&v["cr4"]),
            efer: v.get("efer").map_or(0, hex),
        })
        .collect();
    assert!(!vcpus.is_empty(), "{name}: no vCPUs");
    let roots: Vec<PhysAddr> = meta["roots"]
        .as_array()
        .expect("roots")
        .iter()
        .map(|r| PhysAddr(hex(&r["pa"])))
        .collect();

    let pages = read_tables(name);
    let mut images: Vec<Image<Vec<u8>>> = Vec::new();
    let mut run: Option<(u64, Vec<u8>)> = None;
    for (&pa, bytes) in pages.iter() {
        match &mut run {
            Some((base, buf)) if *base + buf.len() as u64 == pa => buf.extend_from_slice(bytes),
            _ => {
                if let Some((base, buf)) = run.replace((pa, bytes.clone())) {
                    images.push(Image::new(PhysAddr(base), buf));
                }
            }
        }
    }
    if let Some((base, buf)) = run {
        images.push(Image::new(PhysAddr(base), buf));
    }
    Guest {
        name,
        meta,
        vcpus,
        roots,
        images,
        table_pages: pages.len(),
    }
}

/// The QEMU walker every vCPU of the guest used; they must agree, and agree
/// with the mode `meta.json` names.
fn qemu_mode(g: &Guest) -> Qemu {
    let q = Qemu::of(&g.vcpus[0]);
    for v in &g.vcpus {
        assert_eq!(
            Qemu::of(v),
            q,
            "{}: vCPU {} in another mode",
            g.name,
            v.index
        );
    }
    let named = match g.meta["mode"].as_str() {
        Some("i686") => Qemu::Bits32,
        Some("pae") => Qemu::Pae,
        Some("x86_64") if q == Qemu::La57 => Qemu::La57,
        Some("x86_64") => Qemu::La48,
        other => panic!("{}: mode {other:?}", g.name),
    };
    assert_eq!(q, named, "{}: registers and meta.json disagree", g.name);
    q
}

// ---------------------------------------------------------------------------
// QEMU's renderings (QEMU 7.2, target/i386/monitor.c), from ptwalk's leaves

/// Which of QEMU's page-table walkers printed a vCPU's text. `hmp_info_tlb`
/// and `hmp_info_mem` choose from CR4.PAE, EFER.LMA and CR4.LA57 alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Qemu {
    /// `tlb_info_32` / `mem_info_32`.
    Bits32,
    /// `tlb_info_pae32` / `mem_info_pae32`.
    Pae,
    /// `tlb_info_la48` / `mem_info_la48`.
    La48,
    /// `tlb_info_la57` (its `mem_info_la57` tests PDPT and PD entries for
    /// presence the wrong way round, so there is no `info mem` to match).
    La57,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
/// Bit 7: PS in a directory entry, PAT in a PTE.
const PS: u64 = 1 << 7;

impl Qemu {
    /// QEMU's choice for a vCPU's registers (paging must be on).
    fn of(v: &Vcpu) -> Qemu {
        assert_ne!(v.cr0 & CR0_PG, 0, "vCPU {}: paging off", v.index);
        match (
            v.cr4 & CR4_PAE != 0,
            v.efer & EFER_LMA != 0,
            v.cr4 & CR4_LA57 != 0,
        ) {
            (false, _, _) => Qemu::Bits32,
            (true, false, _) => Qemu::Pae,
            (true, true, false) => Qemu::La48,
            (true, true, true) => Qemu::La57,
        }
    }

    /// Width of the linear addresses QEMU's loops build from the table
    /// indices (`info mem` merges ranges in this space, before
    /// sign-extending).
    fn linear_bits(self) -> u32 {
        match self {
            Qemu::Bits32 | Qemu::Pae => 32,
            Qemu::La48 => 48,
            Qemu::La57 => 57,
        }
    }

    /// `addr_canonical`: sign-extends from bit 47 (bit 56 under LA57). It
    /// applies to every address QEMU prints, also `info mem`'s range ends
    /// and sizes; 32-bit values are never changed.
    fn canonical(self, a: u64) -> u64 {
        let top = match self {
            Qemu::Bits32 | Qemu::Pae => return a,
            Qemu::La48 => 47,
            Qemu::La57 => 56,
        };
        if a & (1 << top) != 0 {
            a | !((1u64 << (top + 1)) - 1)
        } else {
            a
        }
    }

    /// The mask `print_pte` applies to the leaf entry for `info tlb`'s
    /// second column. This is not the frame address: 32-bit paging keeps
    /// bit 21 of a 4 MiB entry and drops its PSE-36 bits; PAE keeps every
    /// high bit (so NX pages print `8000…`) and bit 20 of a 2 MiB entry;
    /// 64-bit paging keeps bits 12..=49 only.
    fn column_mask(self, size_log2: u8) -> u64 {
        match (self, size_log2) {
            (Qemu::Bits32, 12) => 0xFFFF_F000,
            (Qemu::Bits32, 22) => 0xFFE0_0000,
            (Qemu::Pae, 12) => !0xFFF,
            (Qemu::Pae, 21) => !0xF_FFFF,
            (Qemu::La48 | Qemu::La57, 12) => 0x3_FFFF_FFFF_F000,
            (Qemu::La48 | Qemu::La57, 21) => 0x3_FFFF_FFE0_0000,
            (Qemu::La48 | Qemu::La57, 30) => 0x3_FFFF_C000_0000,
            _ => panic!("{self:?}: no {size_log2}-bit pages"),
        }
    }
}

/// `info tlb`: one line per present leaf, in VA order: the (canonical) VA,
/// the leaf entry under [`Qemu::column_mask`], then the leaf entry's own
/// flags `XGPDACTUW` (nothing from the directories above it; a PTE's bit 7,
/// PAT, is cleared first, so `P` marks large pages only). The VA is
/// printed as ptwalk reports it: ptwalk's VAs are canonical, as QEMU's are.
fn render_tlb(q: Qemu, leaves: &[Leaf]) -> String {
    let mut s = String::new();
    for l in leaves {
        let e = if l.size_log2 == 12 {
            l.entry & !PS
        } else {
            l.entry
        };
        let bit = |b: u32, c: char| if e & (1 << b) != 0 { c } else { '-' };
        writeln!(
            s,
            "{:016x}: {:016x} {}{}{}{}{}{}{}{}{}",
            l.va.0,
            e & q.column_mask(l.size_log2),
            bit(63, 'X'),
            bit(8, 'G'),
            bit(7, 'P'),
            bit(6, 'D'),
            bit(5, 'A'),
            bit(4, 'C'),
            bit(3, 'T'),
            bit(2, 'U'),
            bit(1, 'W'),
        )
        .unwrap();
    }
    s
}

/// `info mem`: maximal ranges of present pages with equal user and write
/// permission (each the AND along the path; PAE's PDPTEs have neither, NX
/// plays no part), whatever their frames: `start-end size` then `u`/`-`,
/// `r`, `w`/`-`. QEMU merges in the linear (not sign-extended) address
/// space, then prints start, end and size through `addr_canonical`: a range
/// could run across the non-canonical hole, one ending at 2^47 prints its
/// end as `ffff800000000000`, one ending at the top prints `0001000000000000`.
fn render_mem(q: Qemu, leaves: &[Leaf]) -> String {
    let linear_mask = (1u64 << q.linear_bits()) - 1;
    let mut s = String::new();
    let mut flush = |start: u64, end: u64, user: bool, write: bool| {
        writeln!(
            s,
            "{:016x}-{:016x} {:016x} {}r{}",
            q.canonical(start),
            q.canonical(end),
            q.canonical(end - start),
            if user { 'u' } else { '-' },
            if write { 'w' } else { '-' },
        )
        .unwrap();
    };
    let mut cur: Option<(u64, u64, bool, bool)> = None;
    for l in leaves {
        let va = l.va.0 & linear_mask;
        let (user, write) = (l.access.user(), l.access.writable());
        match &mut cur {
            Some((_, end, u, w)) if *end == va && (*u, *w) == (user, write) => *end += l.size(),
            _ => {
                if let Some((a, b, u, w)) = cur {
                    flush(a, b, u, w);
                }
                cur = Some((va, va + l.size(), user, write));
            }
        }
    }
    if let Some((a, b, u, w)) = cur {
        flush(a, b, u, w);
    }
    s
}

/// Compares our rendering with QEMU's line for line, naming the first
/// difference.
fn compare(what: &str, ours: &str, qemu: &str) {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), qemu.lines().collect());
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        panic!(
            "{what}: line {} differs (ptwalk {} lines, QEMU {} lines)\n  ptwalk: {:?}\n  QEMU:   {:?}",
            i + 1,
            a.len(),
            b.len(),
            a.get(i),
            b.get(i)
        );
    }
    assert!(!b.is_empty(), "{what}: QEMU printed nothing");
}

/// Checks our rendering of vCPU `v`'s `kind` (`tlb` or `mem`) against
/// QEMU's: line for line when the text is committed (and its digest is the
/// one recorded), else by the SHA-256 and line count `meta.json` recorded
/// when QEMU printed it.
fn check_with_qemu(g: &Guest, v: &Vcpu, kind: &str, ours: &str, what: &str) {
    let key = format!("cpu{}.{kind}", v.index);
    let t = &g.meta["qemu_texts"][&key];
    let digest = t["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no digest of QEMU's {key} recorded"));
    let lines = t["lines"].as_u64().expect("line count");
    if t["committed"] == true {
        let text = read_text(g.name, &format!("{key}.txt.gz"));
        assert_eq!(sha256_hex(text.as_bytes()), digest, "{what}: {key}.txt.gz");
        compare(what, ours, &text);
    } else {
        assert_eq!(ours.lines().count() as u64, lines, "{what}: line count");
        assert_eq!(sha256_hex(ours.as_bytes()), digest, "{what}: SHA-256");
    }
}

/// The space of each vCPU: the index of its CR3's root table among the
/// roots.
fn space_of(g: &Guest, v: &Vcpu) -> usize {
    let root = PhysAddr(v.cr3 & 0xFFFF_F000);
    g.roots
        .iter()
        .position(|&r| r == root)
        .unwrap_or_else(|| panic!("{}: vCPU {}'s CR3 {:#x} is no root", g.name, v.index, v.cr3))
}

fn mode(g: &Guest) -> I686 {
    let pse = g.vcpus[0].cr4 & CR4_PSE != 0;
    assert!(
        g.vcpus.iter().all(|v| (v.cr4 & CR4_PSE != 0) == pse),
        "{}: CR4.PSE differs between vCPUs",
        g.name
    );
    I686 { pse }
}

/// An owner index with room for every extracted table (a full index would
/// show up as a fault event and fail the test). Built over a `Vec` in the
/// test, so the test needs none of the crate's features.
fn owner_index(g: &Guest) -> OwnerIndex<Vec<OwnerSlot>> {
    OwnerIndex::new(vec![
        OwnerSlot::EMPTY;
        (4 * g.table_pages).next_power_of_two()
    ])
}

/// Every space's leaves, walking `roots` together with an owner index and
/// following aliases.
fn walk_followed(g: &Guest, roots: &[PhysAddr]) -> Vec<Vec<Leaf>> {
    let mem = Regions::new(&g.images).expect("sorted, disjoint pages");
    let mut per_space = vec![Vec::new(); roots.len()];
    let walk = Walk::new(&mem, roots)
        .expect("distinct roots")
        .with_mode(mode(g))
        .with_owners(owner_index(g))
        .follow_aliases();
    for e in walk {
        match e {
            WalkEvent::Leaf(l) => per_space[l.space.index()].push(l),
            other => panic!("{}: unexpected event in a real guest: {other:?}", g.name),
        }
    }
    per_space
}

#[test]
fn every_vcpu_matches_qemu_info_tlb_and_info_mem() {
    for &name in COMPARED {
        let g = load(name);
        let q = qemu_mode(&g);
        let spaces = walk_followed(&g, &g.roots);
        for v in &g.vcpus {
            let space = space_of(&g, v);
            let leaves = &spaces[space];
            let what = format!("{name} vCPU {} (CR3 {:#x}, space {space})", v.index, v.cr3);
            check_with_qemu(
                &g,
                v,
                "tlb",
                &render_tlb(q, leaves),
                &format!("{what} info tlb"),
            );
            if q != Qemu::La57 {
                check_with_qemu(
                    &g,
                    v,
                    "mem",
                    &render_mem(q, leaves),
                    &format!("{what} info mem"),
                );
            }
        }
    }
}

/// The same spaces walked in the reverse order: ownership moves to another
/// space, so other spaces now reach the shared kernel tables by alias, and
/// each space's mappings stay the same.
#[test]
fn spaces_do_not_depend_on_root_order() {
    for &name in COMPARED {
        let g = load(name);
        let forward = walk_followed(&g, &g.roots);
        let reversed: Vec<PhysAddr> = g.roots.iter().rev().copied().collect();
        let backward = walk_followed(&g, &reversed);
        let n = g.roots.len();
        for (i, leaves) in forward.iter().enumerate() {
            let strip = |ls: &[Leaf]| -> Vec<(u64, u64, u64, u8, ptwalk::Access)> {
                ls.iter()
                    .map(|l| (l.va.0, l.pa.0, l.entry, l.size_log2, l.access))
                    .collect()
            };
            assert_eq!(
                strip(leaves),
                strip(&backward[n - 1 - i]),
                "{name}: space of root {:#x}",
                g.roots[i].0
            );
        }
    }
}

/// The guests really share tables: with several roots, the references
/// consumer reports aliases (so the comparison above exercises alias
/// following), and every table the walk reads is in the extract.
#[test]
fn i686_guests_share_kernel_tables() {
    for &name in I686_GUESTS {
        let g = load(name);
        assert!(
            g.roots.len() >= 2,
            "{name}: the vCPUs sit in one space only; re-take the fixture"
        );
        let mem = Regions::new(&g.images).expect("sorted, disjoint pages");
        let c = Walk::new(&mem, &g.roots)
            .expect("distinct roots")
            .with_mode(mode(&g))
            .with_owners(owner_index(&g))
            .references()
            .counts();
        assert!(
            c.aliases > 0,
            "{name}: no aliases among {} roots",
            g.roots.len()
        );
        assert_eq!((c.faults, c.invalid), (0, 0), "{name}: {c:?}");
        assert!(
            g.table_pages > g.roots.len(),
            "{name}: only root pages extracted"
        );
    }
}

/// Every fixture, of every mode, is whole: its table pages are well-formed
/// records, every root's page is among them, the script found that the
/// extract alone reproduces QEMU's text, and each committed QEMU text has
/// the line count and SHA-256 recorded when it was taken.
#[test]
fn every_fixture_is_whole() {
    for &name in ALL_GUESTS {
        let meta = read_meta(name);
        let pages = read_tables(name);
        assert_eq!(
            meta["table_pages"].as_u64(),
            Some(pages.len() as u64),
            "{name}: table_pages"
        );
        assert_eq!(
            meta["extract_reproduces_qemu_text"], true,
            "{name}: {}",
            meta["mismatches"]
        );
        let roots = meta["roots"].as_array().expect("roots");
        assert!(!roots.is_empty(), "{name}: no roots");
        for r in roots {
            let pa = hex(&r["pa"]) & !0xFFF;
            assert!(
                pages.contains_key(&pa),
                "{name}: root page {pa:#x} not extracted"
            );
        }
        let texts = meta["qemu_texts"].as_object().expect("qemu_texts");
        let mut committed = 0;
        for (key, t) in texts {
            if t["committed"] != true {
                continue;
            }
            let text = read_text(name, &format!("{key}.txt.gz"));
            assert_eq!(
                Some(text.lines().count() as u64),
                t["lines"].as_u64(),
                "{name}: {key}"
            );
            assert_eq!(
                t["sha256"].as_str(),
                Some(sha256_hex(text.as_bytes()).as_str()),
                "{name}: {key}"
            );
            committed += 1;
        }
        assert!(committed > 0, "{name}: no QEMU text committed");
    }
}

// ---------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for the vCPU texts that are not committed

/// The largest `r` with `r^k <= x`.
fn iroot(x: u128, k: u32) -> u128 {
    let (mut lo, mut hi) = (0u128, 1u128 << (128 / k));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if mid.checked_pow(k).is_some_and(|p| p <= x) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// SHA-256 of `data`. `meta.json` records the digest of every vCPU's QEMU
/// text, committed or not; the constants are derived as the standard
/// defines them (the first 32 fraction bits of the square roots of the
/// first 8 primes and the cube roots of the first 64).
fn sha256(data: &[u8]) -> [u8; 32] {
    let primes: Vec<u128> = (2u128..)
        .filter(|&n| (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .take(64)
        .collect();
    let frac = |p: u128, k: u32| (iroot(p << (32 * k), k) & 0xFFFF_FFFF) as u32;
    let k: Vec<u32> = primes.iter().map(|&p| frac(p, 3)).collect();
    let mut h: Vec<u32> = primes[..8].iter().map(|&p| frac(p, 2)).collect();

    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] =
            <[u32; 8]>::try_from(h.as_slice()).unwrap();
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(k[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (o, x) in out.chunks_exact_mut(4).zip(&h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    sha256(data).iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

/// The digest is right: the standard's two-block example, and (in
/// [`every_vcpu_matches_qemu`]) every committed text's recorded digest.
#[test]
fn sha256_known_answers() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}
