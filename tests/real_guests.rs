//! Real guests are the judge: page tables taken from Debian Linux guests
//! paused under QEMU (`scripts/guests/make_guests.py`) in every paging mode
//! (32-bit, PAE, 4-level with PTI, 5-level), walked by ptwalk and rendered
//! in exactly the format of QEMU's own `info tlb` and `info mem`, then
//! compared with the text QEMU printed for each vCPU: line for line where
//! the text is committed, else by the SHA-256 and line count `meta.json`
//! recorded when QEMU printed it (the x86-64 texts are ~66,000 lines per
//! vCPU, so only vCPU 0's are in git).
//!
//! The fixtures in `tests/fixtures/guests/<name>/` hold only the page-table
//! pages reached from the roots (`tables.bin.gz`: records of a u64
//! little-endian physical address and the page's 4096 bytes), `meta.json`
//! (mode, per-vCPU CR0/CR3/CR4/EFER, every root: the vCPUs' CR3s and, under
//! PTI, the other half of each PGD pair) and QEMU's gzip'd monitor output.
//! Leaf frames are not in the extract: the walker never reads them.
//!
//! All roots are walked together with an owner index, following aliases,
//! so most spaces reach the kernel's page tables through aliases, and
//! their renderings must still be QEMU's. The references consumer's view
//! of the same walk is checked against what Linux shares: PTI pairs, the
//! kernel half, PAE's kernel PMD copies, ESPFIX. A missing fixture fails
//! the test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use ptwalk::{
    Access, Aliasing, I686, Image, Leaf, Level, OwnerIndex, OwnerSlot, Pae, PagingMode, PhysAddr,
    Regions, SpaceId, Spaces, Translation, VirtAddr, Walk, WalkError, WalkEvent, X86_64,
};

/// Every fixture: 32-bit paging, PAE, 4-level and 5-level paging.
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
    /// The table pages by address.
    pages: BTreeMap<u64, Vec<u8>>,
    /// The same, merged into contiguous images sorted by address.
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
        table_pages: pages.len(),
        pages,
        images,
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
const EFER_NXE: u64 = 1 << 11;
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

/// ptwalk's mode for a guest, from its vCPUs' registers (which must agree).
#[derive(Clone, Copy, Debug)]
enum Mode {
    I686(I686),
    Pae(Pae),
    X86_64(X86_64),
}

fn mode(g: &Guest) -> Mode {
    let v = &g.vcpus[0];
    for w in &g.vcpus {
        // CR4.PSE matters to 32-bit paging only (Linux leaves it set on
        // some vCPUs of the x86-64 guests and not on others).
        let bits = if v.cr4 & CR4_PAE == 0 {
            CR4_PSE | CR4_PAE
        } else {
            CR4_PAE | CR4_LA57
        };
        assert_eq!(
            (w.cr4 & bits, w.efer & (EFER_LMA | EFER_NXE)),
            (v.cr4 & bits, v.efer & (EFER_LMA | EFER_NXE)),
            "{}: vCPU {} pages otherwise than vCPU {}",
            g.name,
            w.index,
            v.index
        );
    }
    let nxe = v.efer & EFER_NXE != 0;
    match qemu_mode(g) {
        Qemu::Bits32 => Mode::I686(I686 {
            pse: v.cr4 & CR4_PSE != 0,
        }),
        Qemu::Pae => Mode::Pae(Pae::default().with_nxe(nxe)),
        Qemu::La48 => Mode::X86_64(X86_64::default().with_nxe(nxe)),
        Qemu::La57 => Mode::X86_64(X86_64::LA57.with_nxe(nxe)),
    }
}

/// Runs `$body` with `$m` bound to the guest's ptwalk mode value (each mode
/// is its own type).
macro_rules! with_mode {
    ($g:expr, |$m:ident| $body:expr) => {
        match mode($g) {
            Mode::I686($m) => $body,
            Mode::Pae($m) => $body,
            Mode::X86_64($m) => $body,
        }
    };
}

/// The space of each vCPU: its CR3's root table among the roots.
fn space_of(g: &Guest, v: &Vcpu) -> usize {
    let root = with_mode!(g, |m| m.root_table(PhysAddr(v.cr3)));
    g.roots
        .iter()
        .position(|&r| r == root)
        .unwrap_or_else(|| panic!("{}: vCPU {}'s CR3 {:#x} is no root", g.name, v.index, v.cr3))
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
/// following aliases; any other event fails the test.
fn walk_followed(g: &Guest, roots: &[PhysAddr]) -> Vec<Vec<Leaf>> {
    let mem = Regions::new(&g.images).expect("sorted, disjoint pages");
    let mut per_space = vec![Vec::new(); roots.len()];
    with_mode!(g, |m| {
        let walk = Walk::new_in(m, &mem, roots)
            .expect("distinct roots")
            .with_owners(owner_index(g))
            .follow_aliases();
        for e in walk {
            match e {
                WalkEvent::Leaf(l) => per_space[l.space.index()].push(l),
                other => panic!("{}: unexpected event in a real guest: {other:?}", g.name),
            }
        }
    });
    per_space
}

/// [`walk_followed`] over the guest's roots in `meta.json` order, once per
/// fixture for all the tests of this file (a debug build takes seconds per
/// x86-64 guest: 8 spaces of ~70,000 pages each).
fn followed(g: &Guest) -> &'static [Vec<Leaf>] {
    static CACHE: [OnceLock<Vec<Vec<Leaf>>>; ALL_GUESTS.len()] =
        [const { OnceLock::new() }; ALL_GUESTS.len()];
    let i = ALL_GUESTS
        .iter()
        .position(|&n| n == g.name)
        .expect("a fixture of ALL_GUESTS");
    CACHE[i].get_or_init(|| walk_followed(g, &g.roots))
}

/// Every event of the references walk of all roots (aliases reported, not
/// followed).
fn walk_references(g: &Guest) -> Vec<WalkEvent> {
    let mem = Regions::new(&g.images).expect("sorted, disjoint pages");
    with_mode!(g, |m| Walk::new_in(m, &mem, &g.roots)
        .expect("distinct roots")
        .with_owners(owner_index(g))
        .references()
        .collect())
}

#[test]
fn every_vcpu_matches_qemu_info_tlb_and_info_mem() {
    for &name in ALL_GUESTS {
        let g = load(name);
        let q = qemu_mode(&g);
        let spaces = followed(&g);
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
            // QEMU 7.2's `info mem` under LA57 descends the absent PDPT and
            // PD entries and skips the present ones: there is no text to
            // compare (`meta.json` records none).
            if q == Qemu::La57 {
                assert!(g.meta["qemu_texts"][format!("cpu{}.mem", v.index)].is_null());
            } else {
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

/// `Spaces::translate` agrees with QEMU's text without walking: every line
/// of every committed `info tlb` names a page that translates, at its first
/// and last byte, through a leaf whose masked entry is QEMU's column; every
/// committed `info mem` range ends where nothing is mapped (unless another
/// range starts there); and a VA the mode cannot address is refused.
#[test]
fn translate_agrees_with_qemu() {
    for &name in ALL_GUESTS {
        let g = load(name);
        let q = qemu_mode(&g);
        let mem = Regions::new(&g.images).expect("sorted, disjoint pages");
        with_mode!(&g, |m| {
            let spaces = Spaces::new_in(m, &mem, &g.roots).expect("distinct roots");
            let translate = |space: usize, va: u64| {
                spaces
                    .translate(SpaceId(u32::try_from(space).unwrap()), VirtAddr(va))
                    .unwrap_or_else(|e| panic!("{name}: {va:#x}: {e:?}"))
            };
            let mut checked = 0;
            for v in &g.vcpus {
                let space = space_of(&g, v);
                let texts = &g.meta["qemu_texts"];
                if texts[format!("cpu{}.tlb", v.index)]["committed"] == true {
                    for line in read_text(name, &format!("cpu{}.tlb.txt.gz", v.index)).lines() {
                        let va = u64::from_str_radix(&line[..16], 16).expect("a VA");
                        let column = u64::from_str_radix(&line[18..34], 16).expect("a column");
                        let l = match translate(space, va) {
                            Translation::Mapped(l) => l,
                            other => panic!("{name}: {line}: {other:?}"),
                        };
                        let e = if l.size_log2 == 12 {
                            l.entry & !PS
                        } else {
                            l.entry
                        };
                        assert_eq!(
                            (l.va.0, e & q.column_mask(l.size_log2)),
                            (va, column),
                            "{name}: {line}"
                        );
                        let last = va + (l.size() - 1);
                        assert_eq!(
                            translate(space, last),
                            Translation::Mapped(l),
                            "{name}: {line}"
                        );
                        checked += 2;
                    }
                }
                if texts[format!("cpu{}.mem", v.index)]["committed"] == true {
                    let ranges: Vec<(u64, u64)> =
                        read_text(name, &format!("cpu{}.mem.txt.gz", v.index))
                            .lines()
                            .map(|l| {
                                let hex =
                                    |a: usize| u64::from_str_radix(&l[a..a + 16], 16).unwrap();
                                (hex(0), hex(17))
                            })
                            .collect();
                    let starts: std::collections::HashSet<u64> =
                        ranges.iter().map(|&(start, _)| start).collect();
                    for &(_, end) in &ranges {
                        if !starts.contains(&end) && m.linear(end).is_some() {
                            assert_eq!(
                                translate(space, end),
                                Translation::Unmapped,
                                "{name}: vCPU {} at {end:#x}",
                                v.index
                            );
                            checked += 1;
                        }
                    }
                }
            }
            let outside = match q {
                Qemu::Bits32 | Qemu::Pae => 1 << 32,
                Qemu::La48 => 1 << 47,
                Qemu::La57 => 1 << 56,
            };
            assert!(
                matches!(
                    spaces.translate(SpaceId(0), VirtAddr(outside)),
                    Err(WalkError::Unaddressable(VirtAddr(a))) if a == outside
                ),
                "{name}: {outside:#x}"
            );
            println!("{name}: {checked} translations agree with QEMU");
            assert!(checked > 0, "{name}: nothing checked");
        });
    }
}

/// The same spaces walked in the reverse order: ownership moves to another
/// space, so other spaces now reach the shared kernel tables by alias, and
/// each space's mappings stay the same.
#[test]
fn spaces_do_not_depend_on_root_order() {
    for &name in ALL_GUESTS {
        let g = load(name);
        let forward = followed(&g);
        let reversed: Vec<PhysAddr> = g.roots.iter().rev().copied().collect();
        let backward = walk_followed(&g, &reversed);
        let n = g.roots.len();
        for (i, leaves) in forward.iter().enumerate() {
            assert_eq!(
                strip(leaves),
                strip(&backward[n - 1 - i]),
                "{name}: space of root {:#x}",
                g.roots[i].0
            );
        }
    }
}

/// A leaf without its space.
fn strip(ls: &[Leaf]) -> Vec<(u64, u64, u64, u8, u8, Access)> {
    ls.iter()
        .map(|l| (l.va.0, l.pa.0, l.entry, l.level.0, l.size_log2, l.access))
        .collect()
}

// ---------------------------------------------------------------------------
// The sharing the references consumer finds

/// What a guest's references walk found.
struct Sharing {
    /// Leaves reported, per space (its own, not reached through an alias).
    own: Vec<Vec<Leaf>>,
    aliases: Vec<Aliasing>,
}

fn sharing(g: &Guest) -> Sharing {
    let mut s = Sharing {
        own: vec![Vec::new(); g.roots.len()],
        aliases: Vec::new(),
    };
    for e in walk_references(g) {
        match e {
            WalkEvent::Leaf(l) => s.own[l.space.index()].push(l),
            WalkEvent::Aliasing(a) => s.aliases.push(a),
            other => panic!("{}: unexpected event in a real guest: {other:?}", g.name),
        }
    }
    let mut per_level = BTreeMap::<u8, usize>::new();
    for a in &s.aliases {
        *per_level.entry(a.level.0).or_default() += 1;
    }
    // The figures quoted in the README (`--nocapture` shows them).
    println!(
        "{}: {} roots, {} table pages; own leaves per space {:?}; aliases per level {:?}",
        g.name,
        g.roots.len(),
        g.table_pages,
        s.own.iter().map(Vec::len).collect::<Vec<_>>(),
        per_level
    );
    s
}

/// The top-level table's present entries of root `space`: (index, raw).
fn top_entries(g: &Guest, space: usize) -> Vec<(u64, u64)> {
    let root = g.roots[space].0;
    let page = &g.pages[&(root & !0xFFF)];
    let n = match mode(g) {
        Mode::I686(_) => panic!("{}: 8-byte entries only", g.name),
        Mode::Pae(_) => 4,
        Mode::X86_64(_) => 512,
    };
    let off = usize::try_from(root & 0xFFF).unwrap();
    (0..n)
        .map(|i| {
            let at = off + 8 * i;
            (
                i as u64,
                u64::from_le_bytes(page[at..at + 8].try_into().unwrap()),
            )
        })
        .filter(|&(_, e)| e & 1 != 0)
        .collect()
}

/// The level of the root table and the VA bits one of its entries maps.
fn top(g: &Guest) -> (u8, u32) {
    match mode(g) {
        Mode::I686(_) => (2, 22),
        Mode::Pae(_) => (3, 30),
        Mode::X86_64(m) if m.la57() => (5, 48),
        Mode::X86_64(_) => (4, 39),
    }
}

/// The canonical first VA of top-level entry `i`.
fn top_va(g: &Guest, i: u64) -> u64 {
    let (_, shift) = top(g);
    let va = i << shift;
    match mode(g) {
        Mode::X86_64(m) => m.canonical(va),
        _ => va,
    }
}

/// Where the kernel half begins (32-bit: the kernel's quarter above 3 GiB;
/// x86-64: the upper half, `ffff800000000000`, or `ff00000000000000` under
/// LA57).
fn kernel_half(g: &Guest) -> u64 {
    match mode(g) {
        Mode::I686(_) | Mode::Pae(_) => 0xC000_0000,
        Mode::X86_64(m) => m.canonical(1 << (m.va_bits() - 1)),
    }
}

/// Under PTI a process has two roots in one 8 KiB block: the kernel's
/// (even page) and the user's (odd page), in that order in `meta.json`.
fn pti_pairs(g: &Guest) -> Vec<(usize, usize)> {
    assert_eq!(g.meta["pti"], true, "{}: no PTI", g.name);
    assert_eq!(g.roots.len() % 2, 0, "{}: odd root count under PTI", g.name);
    (0..g.roots.len())
        .step_by(2)
        .map(|k| {
            let (kr, ur) = (g.roots[k].0, g.roots[k + 1].0);
            assert_eq!(
                (kr & 0x1FFF, ur),
                (0, kr | 0x1000),
                "{}: roots {k} and {} are no PGD pair",
                g.name,
                k + 1
            );
            (k, k + 1)
        })
        .collect()
}

/// Every present user-half top-level entry of a PTI user PGD names the
/// table its kernel PGD names there: the references walk reports each as
/// an alias at the top level, owned by the kernel PGD at the same VA, and
/// no leaf of the user PGD's own in the user half. Following, the two see
/// the same user pages, but through the kernel PGD none is executable
/// (x86-64 PTI sets NX in the kernel copy's top-level entries; PAE's
/// PDPTEs have no NX bit, so both see the same access there).
#[test]
fn pti_pairs_share_their_user_half() {
    for name in ["pae", "x86_64-pti"] {
        let g = load(name);
        let s = sharing(&g);
        let (level, _) = top(&g);
        let kernel = kernel_half(&g);
        let followed = followed(&g);
        for (k, u) in pti_pairs(&g) {
            let user_top: Vec<(u64, u64)> = top_entries(&g, u)
                .into_iter()
                .filter(|&(i, _)| top_va(&g, i) < kernel)
                .collect();
            assert!(!user_top.is_empty(), "{name}: root {u} maps no user half");
            for (i, e) in user_top {
                let va = top_va(&g, i);
                let a = s
                    .aliases
                    .iter()
                    .find(|a| a.space.index() == u && a.level.0 == level && a.va.0 == va)
                    .unwrap_or_else(|| panic!("{name}: root {u} entry {i} is no alias"));
                assert_eq!(
                    (a.owner.index(), a.owner_va.0, a.entry),
                    (k, va, e),
                    "{name}: root {u} entry {i}"
                );
            }
            assert!(
                !s.own[u].iter().any(|l| l.va.0 < kernel),
                "{name}: root {u} owns user-half leaves"
            );
            let lower = |ls: &[Leaf]| -> Vec<Leaf> {
                ls.iter().filter(|l| l.va.0 < kernel).copied().collect()
            };
            let (kl, ul) = (lower(&followed[k]), lower(&followed[u]));
            assert!(!ul.is_empty(), "{name}: root {u} maps no user page");
            let no_exec = |ls: &[Leaf]| {
                ls.iter()
                    .map(|l| {
                        let mut l = *l;
                        l.access = Access::from_bits(l.access.bits() & !Access::EXECUTE.bits());
                        l
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                strip(&no_exec(&kl)),
                strip(&no_exec(&ul)),
                "{name}: pair {k}/{u}"
            );
            let exec = |ls: &[Leaf]| ls.iter().filter(|l| l.access.executable()).count();
            assert!(exec(&ul) > 0, "{name}: root {u}: no executable user page");
            match mode(&g) {
                Mode::X86_64(_) => assert_eq!(exec(&kl), 0, "{name}: root {k} executes user pages"),
                _ => assert_eq!(exec(&kl), exec(&ul), "{name}: pair {k}/{u}"),
            }
        }
    }
}

/// Whether root `s` is the first of its kind: the first root, or under PTI
/// the first user PGD.
fn first_of_kind(g: &Guest, s: usize) -> bool {
    s == 0 || (g.meta["pti"] == true && s == 1)
}

/// The guests really share tables: with several roots, the references
/// consumer reports aliases (so the comparisons above exercise alias
/// following), and every table the walk reads is in the extract.
#[test]
fn every_guest_shares_kernel_tables() {
    for &name in ALL_GUESTS {
        let g = load(name);
        assert!(
            g.roots.len() >= 2,
            "{name}: the vCPUs sit in one space only; re-take the fixture"
        );
        let s = sharing(&g);
        assert!(
            !s.aliases.is_empty(),
            "{name}: no aliases among {} roots",
            g.roots.len()
        );
        assert!(
            g.table_pages > g.roots.len(),
            "{name}: only root pages extracted"
        );
    }
}

/// x86-64: every root after the first of its kind names, in every present
/// kernel-half top-level entry, a table an earlier root owns there: the
/// references walk reports each as an alias at the top level, at the same
/// VA, and no leaf of the root's own in the kernel half. Under PTI the
/// first user PGD shares with the kernel PGDs only some of the kernel half
/// (its own copies hold the rest, which the later user PGDs share).
#[test]
fn x86_64_kernel_half_is_shared_at_the_top_level() {
    for name in ["x86_64-pti", "x86_64-la57"] {
        let g = load(name);
        let s = sharing(&g);
        let (level, _) = top(&g);
        let kernel = kernel_half(&g);
        for sp in 0..g.roots.len() {
            let entries: Vec<(u64, u64)> = top_entries(&g, sp)
                .into_iter()
                .filter(|&(i, _)| top_va(&g, i) >= kernel)
                .collect();
            assert!(!entries.is_empty(), "{name}: root {sp} maps no kernel half");
            let aliased = entries
                .iter()
                .filter(|&&(i, e)| {
                    s.aliases.iter().any(|a| {
                        a.space.index() == sp
                            && a.level.0 == level
                            && a.va.0 == top_va(&g, i)
                            && a.owner_va.0 == top_va(&g, i)
                            && a.owner.index() < sp
                            && a.entry == e
                    })
                })
                .count();
            println!(
                "{name}: root {sp}: {} kernel-half top-level entries, {aliased} aliases",
                entries.len()
            );
            let own = s.own[sp].iter().filter(|l| l.va.0 >= kernel).count();
            assert_eq!(
                own == 0,
                !first_of_kind(&g, sp),
                "{name}: root {sp} owns {own} kernel-half leaves"
            );
            if first_of_kind(&g, sp) && sp == 0 {
                assert_eq!(aliased, 0, "{name}: root 0");
            } else if first_of_kind(&g, sp) {
                assert!(aliased > 0 && aliased < entries.len(), "{name}: root {sp}");
            } else {
                assert_eq!(aliased, entries.len(), "{name}: root {sp}");
            }
        }
    }
}

/// ESPFIX (x86-64 Linux's %esp fixup stacks, `ffffff0000000000`, half a
/// TiB): one read-only frame mapped 65,536 times in every space, through
/// one PD that several PDPT entries name, whose entries all name one page
/// table. In the references walk the first root reaches the PD and the
/// page table once each and reports the other entries as aliases within
/// its own space; every other root reaches ESPFIX only through a
/// top-level alias owned by the first. Followed, every space maps the
/// region exactly as QEMU's text of vCPU 0 does.
#[test]
fn x86_64_espfix_is_one_frame_through_aliases() {
    const ESPFIX: std::ops::Range<u64> = 0xFFFF_FF00_0000_0000..0xFFFF_FF80_0000_0000;
    for name in ["x86_64-pti", "x86_64-la57"] {
        let g = load(name);
        let qemu_lines = read_text(name, "cpu0.tlb.txt.gz")
            .lines()
            .filter(|l| {
                let va = u64::from_str_radix(&l[..16], 16).expect("a VA");
                ESPFIX.contains(&va)
            })
            .count();
        assert!(qemu_lines > 0, "{name}: QEMU shows no ESPFIX mapping");

        let s = sharing(&g);
        let (top_level, _) = top(&g);
        let in_espfix = |a: &&Aliasing| ESPFIX.contains(&a.va.0);
        // The first root: 4 KiB leaves of its own, and aliases within itself.
        let own: Vec<&Leaf> = s.own[0]
            .iter()
            .filter(|l| ESPFIX.contains(&l.va.0))
            .collect();
        let inner = |level: u8| -> Vec<&Aliasing> {
            s.aliases
                .iter()
                .filter(in_espfix)
                .filter(|a| a.space.index() == 0 && a.owner.index() == 0 && a.level.0 == level)
                .collect()
        };
        let (pdpt_aliases, pd_aliases) = (inner(3), inner(2));
        let one_table = |v: &[&Aliasing]| v.windows(2).all(|w| w[0].table == w[1].table);
        assert!(one_table(&pdpt_aliases) && one_table(&pd_aliases), "{name}");
        assert!(own.windows(2).all(|w| w[0].pa == w[1].pa), "{name}: frames");
        let product = (1 + pdpt_aliases.len()) * (1 + pd_aliases.len()) * own.len();
        println!(
            "{name}: ESPFIX {} PDPT entries x {} PD entries x {} PTEs = {product}; QEMU {qemu_lines}",
            1 + pdpt_aliases.len(),
            1 + pd_aliases.len(),
            own.len()
        );
        assert_eq!(product, qemu_lines, "{name}");
        // Every other root: a top-level alias owned by the first, nothing of
        // its own in the region.
        for sp in 1..g.roots.len() {
            assert!(
                s.aliases.iter().any(|a| a.space.index() == sp
                    && a.level.0 == top_level
                    && a.owner.index() == 0
                    && (a.va.0..=a.va.0 + (a.len() - 1)).contains(&ESPFIX.start)),
                "{name}: root {sp} reaches ESPFIX otherwise"
            );
            assert!(
                !s.own[sp].iter().any(|l| ESPFIX.contains(&l.va.0)),
                "{name}: root {sp}"
            );
        }
        // Followed: every space maps it, one read-only kernel NX frame.
        for (sp, leaves) in followed(&g).iter().enumerate() {
            let e: Vec<&Leaf> = leaves.iter().filter(|l| ESPFIX.contains(&l.va.0)).collect();
            assert_eq!(e.len(), qemu_lines, "{name}: root {sp}");
            assert!(
                e.iter().all(|l| l.pa == own[0].pa
                    && l.size_log2 == 12
                    && !l.access.writable()
                    && !l.access.user()
                    && !l.access.executable()),
                "{name}: root {sp}"
            );
        }
    }
}

/// PAE under PTI keeps no shared kernel PMD: every root has its own PD for
/// the kernel's quarter (its PDPTE there is never an alias), but the
/// copies of one kind are identical and name the same page tables. In the
/// references walk every root after the first of its kind reports each of
/// its kernel PD's table entries as an alias at level 2 owned by an
/// earlier root, and its 2 MiB pages as its own leaves; followed, the
/// roots of one kind map the kernel quarter identically.
#[test]
fn pae_kernel_pmds_are_copies_sharing_page_tables() {
    let g = load("pae");
    let s = sharing(&g);
    let kernel = kernel_half(&g);
    let followed = followed(&g);
    let mut copies = Vec::new();
    for sp in 0..g.roots.len() {
        assert!(
            !s.aliases
                .iter()
                .any(|a| a.space.index() == sp && a.level.0 == 3 && a.va.0 >= kernel),
            "{}: root {sp}'s kernel PMD is an alias",
            g.name
        );
        let (_, pdpte) = *top_entries(&g, sp)
            .iter()
            .find(|&&(i, _)| i == 3)
            .expect("a kernel PDPTE");
        let pd = pdpte & 0x000F_FFFF_FFFF_F000;
        copies.push(pd);
        let page = &g.pages[&pd];
        let entries: Vec<(u64, u64)> = (0..512u64)
            .map(|i| {
                let at = usize::try_from(8 * i).unwrap();
                (i, u64::from_le_bytes(page[at..at + 8].try_into().unwrap()))
            })
            .filter(|&(_, e)| e & 1 != 0)
            .collect();
        let tables = entries.iter().filter(|&&(_, e)| e & PS == 0).count();
        let large = entries.len() - tables;
        let aliases = s
            .aliases
            .iter()
            .filter(|a| a.space.index() == sp && a.level.0 == 2 && a.va.0 >= kernel)
            .filter(|a| a.owner.index() < sp)
            .count();
        let own_large = s.own[sp]
            .iter()
            .filter(|l| l.va.0 >= kernel && l.size_log2 == 21)
            .count();
        println!(
            "pae: root {sp}: kernel PMD {pd:#x}: {tables} page tables ({aliases} aliases), {large} 2 MiB pages"
        );
        assert_eq!(own_large, large, "pae: root {sp}");
        if first_of_kind(&g, sp) {
            assert!(
                aliases < tables,
                "pae: root {sp} owns none of its page tables"
            );
        } else {
            assert_eq!(aliases, tables, "pae: root {sp}");
            let first = usize::from(sp % 2 == 1);
            assert_eq!(
                g.pages[&pd], g.pages[&copies[first]],
                "pae: root {sp}'s kernel PMD"
            );
            let upper = |ls: &[Leaf]| -> Vec<Leaf> {
                ls.iter().filter(|l| l.va.0 >= kernel).copied().collect()
            };
            assert_eq!(
                strip(&upper(&followed[sp])),
                strip(&upper(&followed[first])),
                "pae: root {sp}"
            );
        }
    }
    copies.sort_unstable();
    copies.dedup();
    assert_eq!(copies.len(), g.roots.len(), "pae: kernel PMDs shared");
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

/// A leaf of space 0 for the renderer checks below.
fn leaf(va: u64, entry: u64, size_log2: u8, access: Access) -> Leaf {
    Leaf {
        space: SpaceId(0),
        va: VirtAddr(va),
        pa: PhysAddr(entry & 0x000F_FFFF_FFFF_F000 & !((1 << size_log2) - 1)),
        entry,
        level: Level((size_log2 - 12) / 9 + 1),
        size_log2,
        access,
    }
}

/// The renderers reproduce what `monitor.c` does where the guests above
/// never go: the PAE column keeps NX, bit 20 of a 2 MiB entry and bits
/// 52..=62; the 64-bit column drops bits 50..=63; a PTE's PAT bit never
/// shows as `P`.
#[test]
fn info_tlb_columns_are_masked_entries() {
    let ro = Access::NONE;
    let pae = [
        leaf(0xC493_4000, 0x8000_0000_0493_4163, 12, ro),
        leaf(0xC420_0000, 0x7FF0_0000_0431_F1E3, 21, ro),
        leaf(0x0804_8000, 0x0000_0000_04F3_C0A5, 12, Access::USER),
    ];
    assert_eq!(
        render_tlb(Qemu::Pae, &pae),
        "00000000c4934000: 8000000004934000 XG-DA---W\n\
         00000000c4200000: 7ff0000004300000 -GPDA---W\n\
         0000000008048000: 0000000004f3c000 ----A--U-\n"
    );
    let la48 = [
        leaf(0xFFFF_8880_0000_0000, 0xFFF3_FFFF_C000_01E3, 30, ro),
        leaf(0xFFFF_FFFF_FF5F_C000, 0x8000_0000_FEC0_017B, 12, ro),
    ];
    assert_eq!(
        render_tlb(Qemu::La48, &la48),
        "ffff888000000000: 0003ffffc0000000 XGPDA---W\n\
         ffffffffff5fc000: 00000000fec00000 XG-DACT-W\n"
    );
    let i686 = [leaf(0xC000_0000, 0x0060_21E3, 22, ro)];
    assert_eq!(
        render_tlb(Qemu::Bits32, &i686),
        "00000000c0000000: 0000000000600000 -GPDA---W\n"
    );
}

/// `info mem` merges in the linear address space and sign-extends what it
/// prints, sizes included; NX never splits a range.
#[test]
fn info_mem_merges_linear_addresses() {
    let urw = Access::USER.bits() | Access::WRITABLE.bits();
    let (urwx, urw) = (
        Access::from_bits(urw | Access::EXECUTE.bits()),
        Access::from_bits(urw),
    );
    let across = [
        leaf(0x0000_7FFF_FFFF_F000, 0x1067, 12, urwx),
        leaf(0xFFFF_8000_0000_0000, 0x2067, 12, urw),
        leaf(0xFFFF_FFFF_FFFF_F000, 0x3001, 12, Access::NONE),
    ];
    assert_eq!(
        render_mem(Qemu::La48, &across),
        "00007ffffffff000-ffff800000001000 0000000000002000 urw\n\
         fffffffffffff000-0001000000000000 0000000000001000 -r-\n"
    );
    assert_eq!(
        render_mem(Qemu::La48, &[leaf(0x0000_7FFF_FFFF_F000, 0x1067, 12, urw)]),
        "00007ffffffff000-ffff800000000000 0000000000001000 urw\n"
    );
    let top = [leaf(0xFFFF_FFFF_FFE0_0000, 0x1E3, 21, Access::WRITABLE)];
    assert_eq!(
        render_mem(Qemu::Pae, &[leaf(0xFFE0_0000, 0x1E3, 21, Access::WRITABLE)]),
        "00000000ffe00000-0000000100000000 0000000000200000 -rw\n"
    );
    assert_eq!(
        render_mem(Qemu::La57, &top),
        "ffffffffffe00000-0200000000000000 0000000000200000 -rw\n"
    );
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

/// The digest is right: the standard's one- and two-block examples (and,
/// in `every_fixture_is_whole`, every committed text's recorded digest).
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
