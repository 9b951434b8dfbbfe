//! The standard workloads of docs/BENCHMARKS.md: the Rust builders
//! reproduce `tools/gen_workloads.py` byte for byte (the script is part of
//! the repository; python3 must be installed, or these tests fail), and
//! `ptwalk walk` on each image reports exactly the expected leaf and alias
//! counts with both consumers (with the `cli` feature, which builds it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

#[cfg(feature = "cli")]
use common::Workload;
use ptwalk::{PhysAddr, SpaceId, Spaces, Translation, VirtAddr};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptwalk-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(feature = "cli")]
fn counts(image: &Path, roots: &[u64], follow: bool) -> (u64, u64, u64, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ptwalk"));
    cmd.arg("walk")
        .arg("--image")
        .arg(image)
        .args(["--format", "count"]);
    for r in roots {
        cmd.arg("--root").arg(format!("{r:#x}"));
    }
    if follow {
        cmd.arg("--follow");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}\t")))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .parse()
            .unwrap()
    };
    (get("leaf"), get("alias"), get("invalid"), get("fault"))
}

#[cfg(feature = "cli")]
fn check(w: Workload) {
    let dir = scratch(w.name);
    let img = dir.join(format!("{}.img", w.name));
    std::fs::write(&img, &w.image).unwrap();
    assert_eq!(
        counts(&img, &w.roots, false),
        (w.leaves_references, w.aliases, 0, 0),
        "{} references",
        w.name
    );
    assert_eq!(
        counts(&img, &w.roots, true),
        (w.leaves_followed, 0, 0, 0),
        "{} follow",
        w.name
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(feature = "cli")]
#[test]
fn dense1_counts() {
    check(common::dense1());
}

#[cfg(feature = "cli")]
#[test]
fn kshared16_counts() {
    check(common::kshared16());
}

#[cfg(feature = "cli")]
#[test]
fn sparse1_counts() {
    check(common::sparse1());
}

/// Runs `tools/gen_workloads.py` (the workload definitions of
/// docs/BENCHMARKS.md, written independently of the Rust builders) into a
/// scratch directory. Fails, never skips, when python3 is missing.
fn generate(name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gen_workloads.py");
    assert!(script.is_file(), "{} is missing", script.display());
    let dir = scratch(name);
    let out = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): it is needed to run {} against the Rust builders",
                script.display()
            )
        });
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn hex(v: &serde_json::Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not a hex string"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// The Rust builders write the same images and roots as the generator
/// script, and the counts the script derives from its own mappings are the
/// ones the Rust workloads (and the benchmarks) expect.
#[test]
fn builders_match_tools_gen_workloads_py() {
    let dir = generate("py-builders");
    for w in [common::dense1(), common::kshared16(), common::sparse1()] {
        let img = std::fs::read(dir.join(format!("{}.img", w.name))).unwrap();
        assert_eq!(img.len(), w.image.len(), "{} image size", w.name);
        assert!(img == w.image, "{} image bytes differ", w.name);
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{}.json", w.name))).unwrap())
                .unwrap();
        assert_eq!(side["mode"], "i686");
        let roots: Vec<u64> = side["roots"].as_array().unwrap().iter().map(hex).collect();
        assert_eq!(roots, w.roots, "{} roots", w.name);
        assert_eq!(side["leaves_references"], w.leaves_references, "{}", w.name);
        assert_eq!(side["aliases"], w.aliases, "{}", w.name);
        assert_eq!(side["leaves_followed"], w.leaves_followed, "{}", w.name);
        assert_eq!(
            (side["invalid"].as_u64(), side["faults"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(
            side.get("v2p").is_some(),
            w.name == "kshared16",
            "{}",
            w.name
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The v2p probe list is the script's, and as many of its pages translate
/// in the Rust-built kshared16 as the script found mapped in its own
/// mappings (docs/BENCHMARKS.md: 1,057 of 4,096).
#[test]
fn v2p_probes_match_tools_gen_workloads_py() {
    let dir = generate("py-v2p");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kshared16.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    let (space, vas) = common::v2p_vas();
    let py: Vec<u64> = side["v2p"]["vas"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex)
        .collect();
    assert_eq!(side["v2p"]["space"], space);
    assert_eq!(py, vas);
    assert_eq!(side["v2p"]["mapped"], common::V2P_MAPPED);

    let w = common::kshared16();
    let roots: Vec<PhysAddr> = w.roots.iter().map(|&r| PhysAddr(r)).collect();
    let spaces = Spaces::new(&w.image[..], &roots).unwrap();
    let mut mapped = 0;
    for &va in &vas {
        match spaces
            .translate(SpaceId(space as u32), VirtAddr(va))
            .unwrap()
        {
            Translation::Mapped(l) => {
                assert_eq!(l.translate(VirtAddr(va)).map(|pa| pa.0 & 0xFFF), Some(0));
                mapped += 1;
            }
            Translation::Unmapped => {}
            Translation::Fault(f) => panic!("{f:?}"),
        }
    }
    assert_eq!(mapped, common::V2P_MAPPED);
}

// ---------------------------------------------------------------------------
// The PAE and x86-64 workloads (built in Rust only, no generator script):
// a small model written here from the SDM's description of 8-byte-entry
// paging counts what each image maps, independently of the builders'
// arithmetic and of the crate.

/// What a walk of `w` reports, by the model: (leaves with references,
/// aliases, leaves with follow, tables owned, entries read by the
/// references walk). Ownership is keyed by (table, level); an alias is
/// not descended by references, and following it in the same memory
/// reaches the same table, so follow descends every table.
fn model64(w: &common::Workload64) -> (u64, u64, u64, u64, u64) {
    use std::collections::HashSet;
    struct M<'a> {
        mem: &'a [u8],
        levels: u8,
        owned: HashSet<(u64, u8)>,
        counts: (u64, u64, u64, u64, u64),
    }
    impl M<'_> {
        fn entries(&self, table: u64, level: u8) -> Vec<u64> {
            let n = if self.levels == 3 && level == 3 {
                4
            } else {
                512
            };
            let t = &self.mem[table as usize..table as usize + 8 * n];
            t.chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        }
        /// Walks a table at `level`; `follow`: count leaves only.
        fn table(&mut self, table: u64, level: u8, follow: bool) {
            let entries = self.entries(table, level);
            if !follow {
                self.counts.4 += entries.len() as u64;
            }
            for e in entries {
                if e & 1 == 0 {
                    continue;
                }
                assert!(level == 1 || e & 0x80 == 0, "no large pages here");
                if level == 1 {
                    if follow {
                        self.counts.2 += 1;
                    } else {
                        self.counts.0 += 1;
                    }
                    continue;
                }
                let child = e & common::ADDR64;
                if follow {
                    self.table(child, level - 1, true);
                } else if self.owned.insert((child, level - 1)) {
                    self.counts.3 += 1;
                    self.table(child, level - 1, false);
                } else {
                    self.counts.1 += 1;
                }
            }
        }
    }
    let mut m = M {
        mem: &w.image,
        levels: w.levels,
        owned: HashSet::new(),
        counts: (0, 0, 0, 0, 0),
    };
    for &r in &w.roots {
        m.table(r, w.levels, false);
    }
    for &r in &w.roots {
        m.table(r, w.levels, true);
    }
    m.counts
}

fn workloads64() -> Vec<common::Workload64> {
    vec![
        common::x64_dense1(),
        common::x64_kshared16(),
        common::x64_sparse1(),
        common::pae_dense1(),
        common::pae_kshared16(),
    ]
}

/// Every 8-byte-entry workload maps what docs/BENCHMARKS.md says, by the
/// model: leaves, aliases, owned tables and entries read; its image holds
/// only its tables (page 0 empty, every other page a table or the PAE
/// roots' page); PAE roots are 32-byte aligned and not page aligned.
#[test]
fn workloads64_counts_by_the_model() {
    for w in workloads64() {
        let (refs, aliases, follow, tables, entries) = model64(&w);
        assert_eq!(
            (refs, aliases, follow),
            (w.leaves_references, w.aliases, w.leaves_followed),
            "{}",
            w.name
        );
        assert_eq!((tables, entries), (w.tables, w.entries), "{}", w.name);
        assert!(w.image[..4096].iter().all(|&b| b == 0), "{}", w.name);
        let root_pages = if w.levels == 3 {
            1
        } else {
            w.roots.len() as u64
        };
        assert_eq!(
            w.image.len() as u64 / 4096,
            1 + root_pages + tables,
            "{}: every page is a table",
            w.name
        );
        for &r in &w.roots {
            if w.levels == 3 {
                assert!(r % 32 == 0 && r % 4096 != 0, "{}: root {r:#x}", w.name);
            } else {
                assert_eq!(r % 4096, 0, "{}", w.name);
            }
        }
    }
}

/// The x86-64 workloads' headline figures (docs/BENCHMARKS.md).
#[test]
fn workloads64_documented_sizes() {
    let sizes: Vec<(&str, usize, u64, u64)> = workloads64()
        .iter()
        .map(|w| (w.name, w.image.len() / 4096, w.leaves_references, w.aliases))
        .collect();
    assert_eq!(
        sizes,
        [
            ("x64_dense1", 2055, 1 << 20, 0),
            ("x64_kshared16", 739, 327_936, 15),
            ("x64_sparse1", 194, 64, 0),
            ("pae_dense1", 2054, 1 << 20, 0),
            ("pae_kshared16", 706, 327_936, 7_680),
        ]
    );
}

/// The x86-64 v2p probes: as many translate by the model's descent of
/// `x64_kshared16`'s space 7 as the definitions map, about half.
#[test]
fn x64_v2p_probes_by_the_model() {
    let w = common::x64_kshared16();
    let (space, vas) = common::x64_v2p_vas();
    let lookup = |va: u64| -> bool {
        let mut t = w.roots[space];
        for level in (1..=4u8).rev() {
            let i = ((va >> (12 + 9 * (u32::from(level) - 1))) & 511) as usize;
            let o = t as usize + 8 * i;
            let e = u64::from_le_bytes(w.image[o..o + 8].try_into().unwrap());
            if e & 1 == 0 {
                return false;
            }
            t = e & common::ADDR64;
        }
        true
    };
    let mapped = vas.iter().filter(|&&va| lookup(va)).count();
    let expected = vas
        .iter()
        .filter(|&&va| common::x64_kshared16_maps(va))
        .count();
    assert_eq!(mapped, expected);
    assert_eq!(mapped, common::X64_V2P_MAPPED);
    assert!((1500..2600).contains(&mapped), "{mapped}");
}

/// The entries the v2p probes read, by a descent written here: i686 in
/// `kshared16`, x86-64 in `x64_kshared16` (docs/BENCHMARKS.md sets the x86-64
/// target by them).
#[test]
fn v2p_entries_read() {
    // Reads entries from `root` down along `va` until one is not a table,
    // with `levels` levels of `bits`-bit indices and `width`-byte entries.
    let read = |img: &[u8], root: u64, va: u64, levels: u32, bits: u32, width: usize| {
        let (mut t, mut n) = (root, 0u64);
        for level in (1..=levels).rev() {
            let i = ((va >> (12 + bits * (level - 1))) & ((1 << bits) - 1)) as usize;
            let o = t as usize + width * i;
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(&img[o..o + width]);
            let e = u64::from_le_bytes(b);
            n += 1;
            if e & 1 == 0 || (level > 1 && e & 0x80 != 0) {
                break;
            }
            t = e & common::ADDR64 & if width == 4 { 0xFFFF_F000 } else { u64::MAX };
        }
        n
    };
    let w = common::kshared16();
    let (space, vas) = common::v2p_vas();
    let i686: u64 = vas
        .iter()
        .map(|&va| read(&w.image, w.roots[space], va, 2, 10, 4))
        .sum();
    assert_eq!(i686, common::V2P_ENTRIES_READ);
    let w = common::x64_kshared16();
    let (space, vas) = common::x64_v2p_vas();
    let x64: u64 = vas
        .iter()
        .map(|&va| read(&w.image, w.roots[space], va, 4, 9, 8))
        .sum();
    assert_eq!(x64, common::X64_V2P_ENTRIES_READ);
}

/// The benchmarks' owner index (`common::bench_slots`) holds every table
/// of each i686 workload: a walk with it reports the expected counts and
/// no fault (a full index would fault and silently shrink the work the
/// per-leaf figures divide by).
#[test]
fn bench_owner_index_holds_every_i686_workload() {
    use ptwalk::{OwnerIndex, OwnerSlot, Walk, WalkExt};
    for w in [common::dense1(), common::kshared16(), common::sparse1()] {
        let roots: Vec<PhysAddr> = w.roots.iter().map(|&r| PhysAddr(r)).collect();
        let mut slots = vec![OwnerSlot::EMPTY; common::bench_slots(w.image.len())];
        let walk = Walk::new(&w.image[..], &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]));
        let c = walk.references().counts();
        assert_eq!(
            (c.leaves, c.aliases, c.invalid, c.faults),
            (w.leaves_references, w.aliases, 0, 0),
            "{} references",
            w.name
        );
        let walk = Walk::new(&w.image[..], &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]));
        let c = walk.follow_aliases().counts();
        assert_eq!(
            (c.leaves, c.aliases, c.invalid, c.faults),
            (w.leaves_followed, 0, 0, 0),
            "{} follow",
            w.name
        );
    }
    // 1,024 slots, what the benchmarks used to give every workload, hold
    // only 896 tables: dense1's 1,024 page tables do not fit.
    assert_eq!(common::bench_slots(common::dense1().image.len()), 2048);
}

/// What the crate reports for walks of an 8-byte-entry workload, in its
/// mode, with the benchmarks' owner index: (references counts, follow
/// counts).
fn crate_counts64(w: &common::Workload64) -> (ptwalk::Counts, ptwalk::Counts) {
    use ptwalk::{OwnerIndex, OwnerSlot, Pae, PagingMode, Walk, WalkExt, X86_64};
    fn go<P: PagingMode>(mode: P, w: &common::Workload64) -> (ptwalk::Counts, ptwalk::Counts) {
        let roots: Vec<PhysAddr> = w.roots.iter().map(|&r| PhysAddr(r)).collect();
        let mut slots = vec![OwnerSlot::EMPTY; common::bench_slots(w.image.len())];
        let refs = Walk::new_in(mode, &w.image[..], &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]))
            .references()
            .counts();
        let follow = Walk::new_in(mode, &w.image[..], &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]))
            .follow_aliases()
            .counts();
        (refs, follow)
    }
    match w.levels {
        3 => go(Pae::default(), w),
        4 => go(X86_64::default(), w),
        n => panic!("{}: {n} levels", w.name),
    }
}

/// The crate walks every 8-byte-entry workload in its mode to exactly the
/// expected counts, with the owner index the benchmarks give it.
#[test]
fn workloads64_counts_by_the_crate() {
    for w in workloads64() {
        let (r, f) = crate_counts64(&w);
        assert_eq!(
            (r.leaves, r.aliases, r.invalid, r.faults),
            (w.leaves_references, w.aliases, 0, 0),
            "{} references",
            w.name
        );
        assert_eq!(
            (f.leaves, f.aliases, f.invalid, f.faults),
            (w.leaves_followed, 0, 0, 0),
            "{} follow",
            w.name
        );
    }
}

/// The crate's x86-64 translations of the v2p probes agree with the
/// definitions: exactly the mapped ones translate, each to its own page.
#[test]
fn x64_v2p_probes_by_the_crate() {
    use ptwalk::X86_64;
    let w = common::x64_kshared16();
    let (space, vas) = common::x64_v2p_vas();
    let roots: Vec<PhysAddr> = w.roots.iter().map(|&r| PhysAddr(r)).collect();
    let spaces = Spaces::new_in(X86_64::default(), &w.image[..], &roots).unwrap();
    let mut mapped = 0;
    for &va in &vas {
        match spaces
            .translate(SpaceId(space as u32), VirtAddr(va))
            .unwrap()
        {
            Translation::Mapped(l) => {
                assert!(common::x64_kshared16_maps(va), "{va:#x}");
                assert_eq!(l.va.0, va, "a 4 KiB leaf at the probe");
                mapped += 1;
            }
            Translation::Unmapped => assert!(!common::x64_kshared16_maps(va), "{va:#x}"),
            Translation::Fault(f) => panic!("{f:?}"),
        }
    }
    assert_eq!(mapped, common::X64_V2P_MAPPED);
}

/// The real-guest benchmark's input: the x86_64-pti fixture as a flat
/// image, all its roots (meta.json), walked following aliases with the
/// benchmarks' owner index, reports exactly the leaves the fixture's
/// script counted per root (`per_root`), and no other event: the figure
/// budgets.txt divides by.
#[test]
fn x64_pti_fixture_follow_counts() {
    use flate2::read::GzDecoder;
    use ptwalk::{OwnerIndex, OwnerSlot, Walk, WalkExt, X86_64};
    use std::io::Read;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guests/x86_64-pti");
    let mut raw = Vec::new();
    GzDecoder::new(std::fs::File::open(dir.join("tables.bin.gz")).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let image = common::flat_image_from_records(&raw);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let roots: Vec<PhysAddr> = meta["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| PhysAddr(hex(&r["pa"])))
        .collect();
    let expected: u64 = meta["per_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["leaves"].as_u64().unwrap())
        .sum();
    assert_eq!(expected, common::X64_PTI_FOLLOWED);
    let pages = meta["table_pages"].as_u64().unwrap() as usize;
    let mut slots = vec![OwnerSlot::EMPTY; common::bench_slots(pages * 4096)];
    let c = Walk::new_in(X86_64::default(), &image[..], &roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .follow_aliases()
        .counts();
    assert_eq!(
        (c.leaves, c.aliases, c.invalid, c.faults),
        (expected, 0, 0, 0)
    );
    // The entries that walk reads, by a model descending every present
    // non-leaf entry as the hardware does (budgets.txt composes the
    // guest's budget from them): 16,920 tables of 512 entries.
    fn entries(image: &[u8], table: u64, level: u8) -> u64 {
        let t = &image[table as usize..table as usize + 4096];
        let mut n = 512;
        for e in t.chunks(8) {
            let e = u64::from_le_bytes(e.try_into().unwrap());
            if e & 1 != 0 && level > 1 && (level == 4 || e & 0x80 == 0) {
                n += entries(image, e & common::ADDR64, level - 1);
            }
        }
        n
    }
    let read: u64 = roots.iter().map(|r| entries(&image, r.0, 4)).sum();
    assert_eq!(read, common::X64_PTI_FOLLOW_ENTRIES);
}
