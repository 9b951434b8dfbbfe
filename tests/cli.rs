//! The `ptwalk` command line: formats, translation, and its errors: one
//! line with exit status 2 (clap's usage errors whole, also status 2),
//! special files refused without blocking, a truncated image reported
//! rather than a signal, a closed output pipe a quiet end.
#![cfg(feature = "cli")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A run that failed on bad input or a failed operation: exit status 2 (so
/// no signal), one line on stderr that starts with `ptwalk: ` and contains
/// `needle`, nothing on stdout, no panic.
fn fails_with(args: &[&str], needle: &str) -> String {
    failed_with(&ptwalk(args), &format!("{args:?}"), needle)
}

fn failed_with(o: &Output, what: &str, needle: &str) -> String {
    assert_eq!(o.status.code(), Some(2), "{what}: {o:?}");
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err:?}");
    assert!(
        err.starts_with("ptwalk: ") && err.ends_with('\n'),
        "{err:?}"
    );
    assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err:?}");
    assert!(o.stdout.is_empty(), "{what}: {o:?}");
    err
}

/// A usage error: clap's whole message (several lines: the error, a tip or
/// the usage, the pointer to --help), exit status 2, nothing on stdout.
fn usage_error(args: &[&str], needles: &[&str]) -> String {
    let o = ptwalk(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
    assert!(!err.contains("panicked"), "{err:?}");
    assert!(o.stdout.is_empty(), "{args:?}");
    err
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ptwalk-cli-{}-{name}.d", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn errors_are_one_line_and_exit_2() {
    let img = sample("errors");
    let img = img.to_str().unwrap();
    fails_with(
        &["walk", "--image", "/nonexistent/x.img", "--root", "0"],
        "cannot open image \"/nonexistent/x.img\": No such file or directory",
    );
    fails_with(
        &[
            "walk", "--image", img, "--base", "0x100000", "--root", "0x1000",
        ],
        &format!("root 0x1000 lies outside the image {img:?} (0x100000..0x105000)"),
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
    std::fs::remove_file(img).unwrap();
}

#[test]
fn bad_values_are_clap_usage_errors_naming_the_argument() {
    let base = ["walk", "--image", "x.img", "--root"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    usage_error(
        &with(&["zz"]),
        &["error: invalid value 'zz' for '--root <PA>': not a valid address: not a number"],
    );
    usage_error(
        &with(&["0", "--range", "5..1"]),
        &[
            "invalid value '5..1' for '--range <START..END>'",
            "ends before it starts",
        ],
    );
    usage_error(
        &with(&["0", "--range", "5"]),
        &["invalid value '5' for '--range <START..END>': not a range"],
    );
    // An option where a number belongs is not mistaken for a negative one.
    usage_error(
        &with(&["--follow"]),
        &["invalid value '--follow' for '--root <PA>'", "not a number"],
    );
    // A value with a newline cannot forge a line in clap's message.
    let err = usage_error(
        &with(&["1\n2"]),
        &["invalid value '1\\n2' for '--root <PA>'"],
    );
    assert!(!err.contains("1\n2"), "{err:?}");
    let err = usage_error(
        &["frobnicate"],
        &["unrecognized subcommand 'frobnicate'", "Usage:"],
    );
    assert!(err.starts_with("error: "), "{err:?}");
}

#[test]
fn bare_ptwalk_prints_usage_and_exits_2() {
    let err = usage_error(
        &[],
        &["Usage: ptwalk <COMMAND>", "walk", "translate", "--help"],
    );
    assert!(
        err.lines().count() > 5,
        "the whole help, not a tagline: {err:?}"
    );
}

#[test]
fn missing_root_is_named_in_clap_s_whole_message() {
    let err = usage_error(
        &["walk", "--image", "x.img"],
        &[
            "error: the following required arguments were not provided:",
            "--root <PA>",
            "Usage: ptwalk walk --image <FILE> --root <PA>",
        ],
    );
    // The names come after the heading, not cut off with it.
    let after = err.split_once("not provided:").unwrap().1;
    assert!(after.contains("--root <PA>"), "{err:?}");
}

#[test]
fn negative_numbers_are_not_addresses() {
    usage_error(
        &["walk", "--image", "x.img", "--root", "-0x1000"],
        &["invalid value '-0x1000' for '--root <PA>': not a valid address: it is negative"],
    );
    usage_error(
        &["walk", "--image", "x.img", "--root", "0", "--base", "-1"],
        &["invalid value '-1' for '--base <PA>': not a valid address: it is negative"],
    );
    usage_error(
        &[
            "walk", "--image", "x.img", "--root", "0", "--range", "-1..5",
        ],
        &[
            "invalid value '-1..5' for '--range <START..END>'",
            "negative",
        ],
    );
    usage_error(
        &[
            "translate",
            "--image",
            "x.img",
            "--root",
            "0",
            "--space",
            "-1",
            "0",
        ],
        &["invalid value '-1' for '--space <N>': not a valid space index: it is negative"],
    );
    usage_error(
        &["translate", "--image", "x.img", "--root", "0", "-5"],
        &["invalid value '-5' for '<VA>...': not a valid address: it is negative"],
    );
}

#[test]
fn space_takes_hex_like_every_number() {
    let img = sample("space-hex");
    let vas = ["0xc0001234", "0x8000010"];
    let hex = stdout(&on_sample(
        "translate",
        &img,
        &[&["--space", "0x1"][..], &vas].concat(),
    ));
    let dec = stdout(&on_sample(
        "translate",
        &img,
        &[&["--space", "1"][..], &vas].concat(),
    ));
    assert_eq!(hex, dec);
    assert!(hex.starts_with("0xc0001234\t0x300234\t"), "{hex}");
    assert!(hex.contains("0x8000010\t0x400010\t"), "{hex}");
    // Options may follow the VAs.
    let after = stdout(&on_sample(
        "translate",
        &img,
        &[&vas[..], &["--space", "0x1"]].concat(),
    ));
    assert_eq!(after, hex);
    failed_with(
        &on_sample("translate", &img, &["--space", "0x2", "0"]),
        "--space 0x2",
        "there is no space 2",
    );
    std::fs::remove_file(img).unwrap();
}

#[test]
fn a_va_the_mode_cannot_address_is_an_error() {
    let img = sample("va-range");
    // Checked before anything is printed: no partial output.
    let o = on_sample("translate", &img, &["0xc0001234", "0x100000000"]);
    failed_with(
        &o,
        "translate 0x100000000",
        "ptwalk: VA 0x100000000 lies outside the 32-bit address space of i686",
    );
    failed_with(
        &on_sample("translate", &img, &["0xffffffffffffffff"]),
        "translate u64::MAX",
        "VA 0xffffffffffffffff lies outside",
    );
    // The last addressable VA is fine.
    let out = stdout(&on_sample("translate", &img, &["0xffffffff"]));
    assert_eq!(out, "0xffffffff\tunmapped\n");
    failed_with(
        &on_sample("walk", &img, &["--range", "0x100000000..0x100001000"]),
        "walk --range above 4 GiB",
        "--range 0x100000000..0x100001000 lies outside the 32-bit address space",
    );
    // PAE has 32-bit VAs too; x86-64's are canonical: the upper half is
    // addressable, the hole between the halves is not. (The sample's
    // tables are i686 ones; only the checks matter here.)
    failed_with(
        &on_sample("translate", &img, &["--mode", "pae", "0x100000000"]),
        "translate pae 0x100000000",
        "ptwalk: VA 0x100000000 lies outside the 32-bit address space of pae",
    );
    for (mode, bad, good) in [
        ("x86-64", "0x800000000000", "0xffff800000000000"),
        ("x86-64-la57", "0x100000000000000", "0xff00000000000000"),
    ] {
        failed_with(
            &on_sample("translate", &img, &["--mode", mode, "0x1000", bad]),
            "translate non-canonical",
            &format!("ptwalk: VA {bad} lies outside the canonical"),
        );
        let out = on_sample("translate", &img, &["--mode", mode, good]);
        assert_eq!(out.status.code(), Some(0), "{mode} {good}");
        failed_with(
            &on_sample(
                "walk",
                &img,
                &["--mode", mode, "--range", &format!("{bad}..{good}")],
            ),
            "walk --range from the hole",
            &format!("--range {bad}..{good} lies outside the canonical"),
        );
    }
    std::fs::remove_file(img).unwrap();
}

#[test]
fn special_files_are_refused_before_anything_blocks() {
    let dir = scratch("special");
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    // A reader opening a FIFO with no writer would block forever: bound it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(["walk", "--image", fifo.to_str().unwrap(), "--root", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("ptwalk blocked on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = child.wait_with_output().unwrap();
    failed_with(
        &o,
        "FIFO",
        &format!("cannot open image {fifo:?}: it is a FIFO (named pipe), not a regular file"),
    );

    let d = dir.join("images");
    std::fs::create_dir(&d).unwrap();
    let err = fails_with(
        &["walk", "--image", d.to_str().unwrap(), "--root", "0"],
        &format!("cannot open image {d:?}: it is a directory, not a regular file"),
    );
    assert!(!err.contains("No such device"), "{err}");
    fails_with(
        &["walk", "--image", "/dev/null", "--root", "0"],
        "cannot open image \"/dev/null\": it is a character device, not a regular file",
    );
    // A symbolic link is followed, and the file it names judged.
    let link = dir.join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    fails_with(
        &[
            "translate",
            "--image",
            link.to_str().unwrap(),
            "--root",
            "0",
            "0",
        ],
        "it is a FIFO",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_about_broken_pipe_named_files_are_reported() {
    // Exit status and silence once depended on "Broken pipe" in the text.
    let dir = scratch("broken-pipe");
    let input = dir.join("Broken pipe");
    fails_with(
        &["walk", "--image", input.to_str().unwrap(), "--root", "0"],
        &format!("cannot open image {input:?}: No such file or directory"),
    );
    std::fs::create_dir(&input).unwrap();
    fails_with(
        &["walk", "--image", input.to_str().unwrap(), "--root", "0"],
        "Broken pipe\": it is a directory",
    );
    let img = sample("broken-pipe-out");
    let prefix = dir.join("Broken pipe").join("missing").join("snap");
    let o = on_sample("compact", &img, &["-o", prefix.to_str().unwrap()]);
    failed_with(
        &o,
        "compact into a missing directory",
        "Broken pipe/missing/snap.img\": No such file or directory",
    );
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_file(img).unwrap();
}

#[test]
fn a_newline_in_a_file_name_cannot_forge_a_line() {
    let dir = scratch("newline");
    let name = dir.join("a\nptwalk: forged");
    let err = fails_with(
        &["walk", "--image", name.to_str().unwrap(), "--root", "0"],
        "a\\nptwalk: forged\": No such file or directory",
    );
    assert!(!err.contains('\r'));
    std::fs::create_dir(&name).unwrap();
    fails_with(
        &["walk", "--image", name.to_str().unwrap(), "--root", "0"],
        "a\\nptwalk: forged\": it is a directory",
    );
    // Messages formatted by compact get the same treatment.
    let img = sample("newline-out");
    let prefix = dir.join("b\nptwalk: forged").join("snap");
    let o = on_sample("compact", &img, &["-o", prefix.to_str().unwrap()]);
    failed_with(&o, "compact", "b\\nptwalk: forged/snap.img");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_file(img).unwrap();
}

/// An image at physical address 0 of `len` bytes (sparse, so `len` may be
/// large): a root at PA 0 whose first `tables` entries point at page
/// tables in the last pages of the file, every entry of each mapped. Walked
/// with references, it prints `tables * 1024` leaves, about 40 bytes each.
fn wide_image(path: &std::path::Path, len: u64, tables: u32) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    let first = len - u64::from(tables) * 0x1000;
    let mut root = vec![0u8; 0x1000];
    for i in 0..tables {
        let pde = (first as u32 + i * 0x1000) | PDE_FLAGS;
        root[4 * i as usize..][..4].copy_from_slice(&pde.to_le_bytes());
    }
    let mut pt = vec![0u8; 0x1000];
    for j in 0..1024u32 {
        pt[4 * j as usize..][..4].copy_from_slice(&((j << 12) | P | US).to_le_bytes());
    }
    f.write_all_at(&root, 0).unwrap();
    for i in 0..u64::from(tables) {
        f.write_all_at(&pt, first + i * 0x1000).unwrap();
    }
}

#[test]
fn an_image_truncated_during_a_walk_is_one_line_not_a_signal() {
    let dir = scratch("truncated");
    let path = dir.join("guest.img");
    // 2 GiB, sparse: the page tables are in its last 256 KiB.
    wide_image(&path, 2 << 30, 64);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(["walk", "--image", path.to_str().unwrap(), "--root", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the walk has printed, it is blocked on the full pipe with most
    // of its 65,536 lines (2.7 MB) still to come, and so most page tables
    // still to read: shrink the file to its root page under it.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("leaf\t0x0\t0x0\t0x0\t"), "{first:?}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0x1000)
        .unwrap();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit 2, not a signal: {:?}",
        o.status
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "ptwalk: image {path:?} was truncated or became unreadable while it was read; the output is incomplete\n"
        )
    );
    let lines = 1 + rest.iter().filter(|&&b| b == b'\n').count();
    assert!(lines < 64 * 1024, "the walk was cut short: {lines} lines");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_sigbus_that_is_not_a_truncation_still_kills() {
    // The handler claims only faults inside the image's mapping: a SIGBUS
    // sent by another process keeps its default action.
    let dir = scratch("kill-bus");
    let path = dir.join("guest.img");
    wide_image(&path, 65 * 0x1000, 64);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(["walk", "--image", path.to_str().unwrap(), "--root", "0"])
        .current_dir(&dir) // where a core file would go
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Printing, so the image is mapped and the handler installed; then
    // blocked on the full pipe.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let sent = Command::new("kill")
        .args(["-BUS", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(7), // SIGBUS on Linux
        "{o:?}"
    );
    assert!(
        o.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reader_that_goes_away_ends_the_walk_quietly() {
    // `ptwalk walk … | head -1`: the output's reader closes the pipe. That
    // is the reader's choice, not a failure: no message, exit status 0.
    let dir = scratch("epipe");
    let path = dir.join("guest.img");
    wide_image(&path, 65 * 0x1000, 64);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(["walk", "--image", path.to_str().unwrap(), "--root", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("leaf\t"), "{first:?}");
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
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
