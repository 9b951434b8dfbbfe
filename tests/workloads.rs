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
