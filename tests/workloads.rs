//! The standard workloads of BENCHMARKS.md: the Rust builders reproduce
//! `shared/tools/gen_workloads.py` byte for byte, and `ptwalk walk` on each
//! image reports exactly the expected leaf and alias counts in both modes.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Workload;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptwalk-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

#[test]
fn dense1_counts() {
    check(common::dense1());
}

#[test]
fn kshared16_counts() {
    check(common::kshared16());
}

#[test]
fn sparse1_counts() {
    check(common::sparse1());
}

/// The Rust builders write the same images, roots, counts and v2p probe
/// list as the Python generator the benchmarks are defined by.
#[test]
fn builders_match_gen_workloads_py() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_workloads.py");
    if !script.exists() {
        eprintln!(
            "skipped: {} not found (run from a checkout with shared/ beside it)",
            script.display()
        );
        return;
    }
    let dir = scratch("py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for w in [common::dense1(), common::kshared16(), common::sparse1()] {
        let img = std::fs::read(dir.join(format!("{}.img", w.name))).unwrap();
        assert!(img == w.image, "{} image differs", w.name);
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{}.json", w.name))).unwrap())
                .unwrap();
        let roots: Vec<u64> = side["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| u64::from_str_radix(r.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
            .collect();
        assert_eq!(roots, w.roots, "{} roots", w.name);
        assert_eq!(side["leaves_this"], w.leaves_references);
        assert_eq!(side["aliases"], w.aliases);
        assert_eq!(side["leaves_followed"], w.leaves_followed);
        if w.name == "kshared16" {
            let (space, vas) = common::v2p_vas();
            assert_eq!(side["v2p_space"], space);
            let py: Vec<u64> = side["v2p_vas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
                })
                .collect();
            assert_eq!(py, vas);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
