//! The `ptwalk` command line: formats, translation, and one-line errors
//! with exit status 2.
#![cfg(feature = "cli")]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{ImageBuilder, P, PDE_FLAGS, RW, US};

fn ptwalk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Two spaces sharing a kernel table, a private page, a table outside the
/// image; written at physical base `0x10_0000`.
fn sample(name: &str) -> PathBuf {
    let mut img = ImageBuilder::new();
    let (a, b, kpt, upt) = (img.alloc(), img.alloc(), img.alloc(), img.alloc());
    img.put(a, 0x300, kpt | PDE_FLAGS);
    img.put(b, 0x300, kpt | PDE_FLAGS);
    img.put(kpt, 1, 0x0030_0000 | P | RW);
    img.put(b, 0x20, upt | PDE_FLAGS);
    img.put(upt, 0, 0x0040_0000 | P | US | 0x200);
    img.put(b, 0x21, 0x0FF0_0000 | PDE_FLAGS);
    // Relocate: tables at 0x1000.. become 0x101000..
    let base = 0x10_0000u32;
    for t in [a, b] {
        for i in [0x300, 0x20, 0x21] {
            let v = img.get(t, i);
            if v & P != 0 && v < 0x0100_0000 {
                img.put(t, i, v + base);
            }
        }
    }
    let path = std::env::temp_dir().join(format!("ptwalk-cli-{}-{name}.img", std::process::id()));
    std::fs::write(&path, &img.buf).unwrap();
    path
}

/// `ptwalk CMD --image IMG --base 0x100000 --root 0x101000 --root 0x102000 EXTRA…`
fn on_sample(cmd: &str, img: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec![cmd, "--image", img.to_str().unwrap(), "--base", "0x100000"];
    args.extend(["--root", "0x101000", "--root", "0x102000"]);
    args.extend(extra);
    ptwalk(&args)
}

#[test]
fn walk_tsv_references() {
    let img = sample("tsv");
    let out = stdout(&on_sample("walk", &img, &[]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "leaf\t0x101000\t0xc0001000\t0x300000\t0x1000\t0x300003\trw,kernel",
            "leaf\t0x102000\t0x8000000\t0x400000\t0x1000\t0x400205\tro,user,cow",
            "fault\t0x102000\t0x8400000\t0x1\t0xff00000\tout-of-bounds",
            "alias\t0x102000\t0xc0000000\t0x400000\t0x2\t0x101000\t0xc0000000\t0x103000\t0x103027",
        ]
    );
    std::fs::remove_file(img).unwrap();
}

#[test]
fn walk_follow_json_and_range() {
    let img = sample("json");
    let out = stdout(&on_sample(
        "walk",
        &img,
        &[
            "--follow",
            "--format",
            "json",
            "--range",
            "0xc0000000..0xc0400000",
        ],
    ));
    let objs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[1]["kind"], "leaf");
    assert_eq!(objs[1]["space"], "0x102000");
    assert_eq!(objs[1]["va"], "0xc0001000");
    assert_eq!(objs[1]["pa"], "0x300000");
    assert_eq!(objs[1]["access"], "rw,kernel");
    std::fs::remove_file(img).unwrap();
}

#[test]
fn translate_prints_pa_or_unmapped() {
    let img = sample("translate");
    let out = stdout(&on_sample(
        "translate",
        &img,
        &[
            "--space",
            "1",
            "0xc0001234",
            "0xc0002000",
            "0x8000010",
            "0x8400000",
        ],
    ));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "0xc0001234\t0x300234\t0x1000\t0x300003\trw,kernel",
            "0xc0002000\tunmapped",
            "0x8000010\t0x400010\t0x1000\t0x400205\tro,user,cow",
            "0x8400000\tfault\t0x1\t0xff00000\tout-of-bounds",
        ]
    );
    std::fs::remove_file(img).unwrap();
}

fn fails_with(args: &[&str], needle: &str) {
    let o = ptwalk(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(o.stdout.is_empty());
}

#[test]
fn errors_are_one_line_and_exit_2() {
    let img = sample("errors");
    let img = img.to_str().unwrap();
    fails_with(
        &["walk", "--image", "/nonexistent/x.img", "--root", "0"],
        "cannot open /nonexistent/x.img",
    );
    fails_with(
        &[
            "walk", "--image", img, "--base", "0x100000", "--root", "0x1000",
        ],
        "root 0x1000 lies outside the image",
    );
    fails_with(
        &["walk", "--image", img, "--root", "zz"],
        "'zz' is not a number",
    );
    fails_with(
        &[
            "walk", "--image", img, "--base", "0x100000", "--root", "0x101000", "--range", "5..1",
        ],
        "ends before it starts",
    );
    fails_with(
        &[
            "walk", "--image", img, "--base", "0x100000", "--root", "0x101000", "--range", "5",
        ],
        "is not a range",
    );
    fails_with(
        &[
            "walk", "--image", img, "--base", "0x100000", "--root", "0x101000", "--root",
            "0x101000",
        ],
        "given twice",
    );
    fails_with(
        &[
            "translate",
            "--image",
            img,
            "--base",
            "0x100000",
            "--root",
            "0x101000",
            "--space",
            "3",
            "0",
        ],
        "no space 3",
    );
    fails_with(&["frobnicate"], "frobnicate");
    std::fs::remove_file(img).unwrap();
}

#[test]
fn demo_explains_both_consumers() {
    let out = stdout(&ptwalk(&["demo"]));
    assert!(out.contains("references()") && out.contains("follow_aliases()"));
    assert!(out.contains("alias of init @0xc0000000"));
    assert!(out.contains("invalid (4 MiB)"));
    assert!(out.contains("0x40048000 leaf  0x01100000 4K ro,user"));
}

#[test]
fn compact_writes_image_and_sidecar_and_verifies() {
    let img = sample("compact");
    let dir = std::env::temp_dir().join(format!("ptwalk-cli-{}-compact-out", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("snap");
    let out = stdout(&on_sample(
        "compact",
        &img,
        &[
            "--cow",
            "--verify",
            "--out-base",
            "0x200000",
            "-o",
            prefix.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("aliases_linked\t1"), "{out}");
    assert!(out.contains("verify\tok"), "{out}");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("snap.json")).unwrap()).unwrap();
    assert_eq!(side["base"], "0x200000");
    assert_eq!(side["roots"].as_array().unwrap().len(), 2);
    assert_eq!(side["stats"]["aliases_linked"], 1);
    // The output walks like the input, the shared table still shared.
    let roots: Vec<String> = side["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let walked = stdout(&ptwalk(&[
        "walk",
        "--image",
        dir.join("snap.img").to_str().unwrap(),
        "--base",
        "0x200000",
        "--root",
        &roots[0],
        "--root",
        &roots[1],
        "--format",
        "count",
    ]));
    // The unreadable table of the input is not carried over: no fault.
    assert_eq!(walked, "leaf\t2\nalias\t1\ninvalid\t0\nfault\t0\n");
    // Nothing half-written is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_file(img).unwrap();
}

#[test]
fn compact_never_overwrites_its_input() {
    let img = sample("overwrite");
    let before = std::fs::read(&img).unwrap();
    let prefix = img.with_extension("");
    fails_with(
        &[
            "compact",
            "--image",
            img.to_str().unwrap(),
            "--base",
            "0x100000",
            "--root",
            "0x101000",
            "-o",
            prefix.to_str().unwrap(),
        ],
        "refusing to overwrite the input image",
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);
    std::fs::remove_file(img).unwrap();
}
