//! `ptwalk compact` as a process: the output pair appears whole or not at
//! all, whatever goes wrong and whenever SIGINT or SIGTERM arrives.
#![cfg(feature = "cli")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

fn ptwalk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(args)
        .output()
        .unwrap()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ptwalk-cc-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// An image whose one space maps `mib` MiB of data with 4 MiB pages from
/// 4 MiB up (a sparse file: the data reads as zeros but is copied all
/// the same). The root is at 0x1000.
fn image(dir: &Path, mib: u64) -> PathBuf {
    let path = dir.join("in.img");
    let mut buf = vec![0u8; 0x2000];
    for i in 0..mib / 4 {
        let pde = ((i + 1) << 22) as u32 | 0x83; // P|RW|PS
        let o = 0x1000 + 4 * (0x100 + i as usize);
        buf[o..o + 4].copy_from_slice(&pde.to_le_bytes());
    }
    buf[0x1FF0..0x1FF4].copy_from_slice(b"mark");
    fs::write(&path, &buf).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((mib + 4) << 20).unwrap();
    path
}

fn compact_args<'a>(img: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["compact", "--image", img, "--root", "0x1000", "-o", out]
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether OUT.json describes OUT.img (size and XXH3-64).
fn pair_matches(out: &Path) -> bool {
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out.with_extension("json")).unwrap()).unwrap();
    let img = fs::read(out.with_extension("img")).unwrap();
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&img));
    json["image"]["bytes"] == img.len() as u64 && json["image"]["xxh3"] == hash.as_str()
}

fn one_error_line(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.starts_with("ptwalk: ") && err.contains(needle),
        "{err:?}"
    );
}

#[test]
fn the_sidecar_names_its_image() {
    let dir = scratch("sidecar");
    let img = image(&dir, 8);
    let out = dir.join("snap");
    let o = ptwalk(&compact_args(img.to_str().unwrap(), out.to_str().unwrap()));
    assert!(o.status.success(), "{o:?}");
    assert!(pair_matches(&out));
    assert_eq!(names(&dir), ["in.img", "snap.img", "snap.json"]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_directory_in_the_way_of_the_json_leaves_nothing() {
    let dir = scratch("json-dir");
    let img = image(&dir, 8);
    let out = dir.join("snap");
    fs::create_dir(dir.join("snap.json")).unwrap();
    let o = ptwalk(&compact_args(img.to_str().unwrap(), out.to_str().unwrap()));
    one_error_line(&o, "snap.json\": it exists and is not a regular file");
    assert_eq!(
        names(&dir),
        ["in.img", "snap.json"],
        "no image, no temp file"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unwritable_place_leaves_the_old_pair_untouched() {
    let dir = scratch("unwritable");
    let img = image(&dir, 8);
    let out = dir.join("snap");
    assert!(
        ptwalk(&compact_args(img.to_str().unwrap(), out.to_str().unwrap()))
            .status
            .success()
    );
    let before = (
        fs::read(dir.join("snap.img")).unwrap(),
        fs::read(dir.join("snap.json")).unwrap(),
    );
    // A regular file used as a directory (root ignores permission bits,
    // so an ENOTDIR stands in for a read-only directory), then /proc.
    let file_as_dir = dir.join("in.img").join("snap");
    for target in [file_as_dir.to_str().unwrap(), "/proc/ptwalk-test/snap"] {
        let o = ptwalk(&compact_args(img.to_str().unwrap(), target));
        one_error_line(&o, "cannot write");
    }
    let after = (
        fs::read(dir.join("snap.img")).unwrap(),
        fs::read(dir.join("snap.json")).unwrap(),
    );
    assert!(before == after);
    assert_eq!(names(&dir), ["in.img", "snap.img", "snap.json"]);
    fs::remove_dir_all(dir).unwrap();
}

/// SIGINT or SIGTERM at many moments of a long compaction (64 MiB copied
/// over an older pair): afterwards the directory holds the old pair or a
/// complete new one, never half of one, never a temporary file.
#[test]
fn a_signal_at_any_moment_never_leaves_half_a_pair() {
    let dir = scratch("signals");
    let small = dir.join("small");
    fs::create_dir(&small).unwrap();
    let small_img = image(&small, 4);
    let img = image(&dir, 64);
    let out = dir.join("snap");
    let (img_s, out_s) = (img.to_str().unwrap(), out.to_str().unwrap());
    let (mut interrupted, mut completed) = (0, 0);
    for (n, delay_ms) in [0u64, 3, 10, 30, 80, 160, 320, 640, 1500]
        .into_iter()
        .enumerate()
    {
        // An older pair (of another image) that must survive or be replaced whole.
        let o = ptwalk(&compact_args(small_img.to_str().unwrap(), out_s));
        assert!(o.status.success(), "{o:?}");
        let old = fs::read(dir.join("snap.json")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ptwalk"))
            .args(compact_args(img_s, out_s))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        sleep(Duration::from_millis(delay_ms));
        let sig = if n % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        // SAFETY: signalling our own child, which has not been waited for.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            names(&dir),
            ["in.img", "small", "snap.img", "snap.json"],
            "after a signal at {delay_ms} ms: {o:?}"
        );
        assert!(pair_matches(&out), "a matching pair after {delay_ms} ms");
        if o.status.success() {
            completed += 1;
            assert_ne!(fs::read(dir.join("snap.json")).unwrap(), old);
        } else {
            interrupted += 1;
            assert_eq!(
                fs::read(dir.join("snap.json")).unwrap(),
                old,
                "old pair untouched"
            );
            // Caught (one line, 128 + signal) or, before the handler was
            // installed, killed by the signal itself.
            let code = o.status.code();
            assert!(code.is_none() || code == Some(128 + sig), "{o:?}");
            if code.is_some() {
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(err.lines().count(), 1, "{err:?}");
                assert!(err.contains("interrupted"), "{err:?}");
            }
        }
    }
    assert!(
        interrupted >= 3,
        "{interrupted} interrupted, {completed} completed"
    );
    fs::remove_dir_all(dir).unwrap();
}
