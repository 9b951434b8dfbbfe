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

/// The i686 fixtures (32-bit paging), compared with QEMU here.
const I686_GUESTS: &[&str] = &["i686"];

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

/// One vCPU: its index, CR3 and CR4.
struct Vcpu {
    index: usize,
    cr3: u64,
    cr4: u64,
}

struct Guest {
    name: &'static str,
    vcpus: Vec<Vcpu>,
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
    assert_eq!(meta["mode"], "i686", "{name}: not a 32-bit paging guest");
    let vcpus: Vec<Vcpu> = meta["vcpus"]
        .as_array()
        .expect("vcpus")
        .iter()
        .map(|v| Vcpu {
            index: usize::try_from(v["index"].as_u64().expect("index")).unwrap(),
            cr3: hex(&v["cr3"]),
            cr4: hex(&v["cr4"]),
        })
        .collect();
    assert!(!vcpus.is_empty(), "{name}: no vCPUs");

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
        vcpus,
        images,
        table_pages: pages.len(),
    }
}

/// `info tlb` for 32-bit paging: one line per present leaf, in VA order:
/// the VA and the frame as 16 hex digits, then the leaf entry's own flags
/// `XGPDACTUW` (NX never exists here; P is a 4 MiB page's PS bit; a PTE's
/// bit 7 is PAT, which QEMU clears before printing).
fn render_tlb(leaves: &[Leaf]) -> String {
    let mut s = String::new();
    for l in leaves {
        let e = l.entry;
        let bit = |b: u32, c: char| if e & (1 << b) != 0 { c } else { '-' };
        let ps = if l.size_log2 > 12 { bit(7, 'P') } else { '-' };
        writeln!(
            s,
            "{:016x}: {:016x} {}{}{}{}{}{}{}{}{}",
            l.va.0,
            l.pa.0,
            bit(63, 'X'),
            bit(8, 'G'),
            ps,
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

/// `info mem`: maximal VA ranges of present pages with equal effective
/// protection (user and write, each the AND along the path), whatever their frames:
/// `start-end size` as 16 hex digits, then `u`/`-`, `r`, `w`/`-`.
fn render_mem(leaves: &[Leaf]) -> String {
    let mut s = String::new();
    let mut flush = |start: u64, end: u64, user: bool, write: bool| {
        writeln!(
            s,
            "{start:016x}-{end:016x} {:016x} {}r{}",
            end - start,
            if user { 'u' } else { '-' },
            if write { 'w' } else { '-' },
        )
        .unwrap();
    };
    let mut cur: Option<(u64, u64, ptwalk::Access)> = None;
    for l in leaves {
        match &mut cur {
            Some((_, end, access)) if *end == l.va.0 && *access == l.access => *end += l.size(),
            _ => {
                if let Some((a, b, acc)) = cur {
                    flush(a, b, acc.user(), acc.writable());
                }
                cur = Some((l.va.0, l.va.0 + l.size(), l.access));
            }
        }
    }
    if let Some((a, b, acc)) = cur {
        flush(a, b, acc.user(), acc.writable());
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

/// Distinct roots in vCPU order, and each vCPU's space.
fn roots(g: &Guest) -> (Vec<PhysAddr>, Vec<usize>) {
    let mut roots: Vec<PhysAddr> = Vec::new();
    let mut space_of = Vec::new();
    for v in &g.vcpus {
        let r = PhysAddr(v.cr3 & 0xFFFF_F000);
        let i = roots.iter().position(|&x| x == r).unwrap_or_else(|| {
            roots.push(r);
            roots.len() - 1
        });
        space_of.push(i);
    }
    (roots, space_of)
}

fn mode(g: &Guest) -> I686 {
    let pse = g.vcpus[0].cr4 & (1 << 4) != 0;
    assert!(
        g.vcpus.iter().all(|v| (v.cr4 & (1 << 4) != 0) == pse),
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
fn i686_info_tlb_and_info_mem_match_qemu_line_for_line() {
    for &name in I686_GUESTS {
        let g = load(name);
        let (roots, space_of) = roots(&g);
        let spaces = walk_followed(&g, &roots);
        for (v, &space) in g.vcpus.iter().zip(&space_of) {
            let leaves = &spaces[space];
            let what = format!("{name} vCPU {} (CR3 {:#x}, space {space})", v.index, v.cr3);
            compare(
                &format!("{what} info tlb"),
                &render_tlb(leaves),
                &read_text(name, &format!("cpu{}.tlb.txt.gz", v.index)),
            );
            compare(
                &format!("{what} info mem"),
                &render_mem(leaves),
                &read_text(name, &format!("cpu{}.mem.txt.gz", v.index)),
            );
        }
    }
}

/// The same spaces walked in the reverse order: ownership moves to another
/// space, so other spaces now reach the shared kernel tables by alias, and
/// each space's mappings stay the same.
#[test]
fn i686_spaces_do_not_depend_on_root_order() {
    for &name in I686_GUESTS {
        let g = load(name);
        let (roots, _) = roots(&g);
        let forward = walk_followed(&g, &roots);
        let reversed: Vec<PhysAddr> = roots.iter().rev().copied().collect();
        let backward = walk_followed(&g, &reversed);
        let n = roots.len();
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
                roots[i].0
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
        let (roots, _) = roots(&g);
        assert!(
            roots.len() >= 2,
            "{name}: the vCPUs sit in one space only; re-take the fixture"
        );
        let mem = Regions::new(&g.images).expect("sorted, disjoint pages");
        let c = Walk::new(&mem, &roots)
            .expect("distinct roots")
            .with_mode(mode(&g))
            .with_owners(owner_index(&g))
            .references()
            .counts();
        assert!(
            c.aliases > 0,
            "{name}: no aliases among {} roots",
            roots.len()
        );
        assert_eq!((c.faults, c.invalid), (0, 0), "{name}: {c:?}");
        assert!(
            g.table_pages > roots.len(),
            "{name}: only root pages extracted"
        );
    }
}

/// Every fixture, of every mode, is whole: its table pages are well-formed
/// records, every root's page is among them, the script found that the
/// extract alone reproduces QEMU's text, and each committed QEMU text has
/// the line count recorded when it was taken.
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
            committed += 1;
        }
        assert!(committed > 0, "{name}: no QEMU text committed");
    }
}
