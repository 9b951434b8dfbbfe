//! `ptwalk roots` end to end on a real guest: the i686 extract
//! (`tests/fixtures/guests/i686/`: every vCPU root's page tables) placed
//! in an image of zeros as large as the guest's memory, given to the CLI.
//! Every root `meta.json` names is found, from one vCPU's root, from a
//! QEMU core's vCPU notes, and by the scan alone; nothing else is. The
//! other modes are tested on their extracts beside `roots::find`.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
mod cli_support;

use flate2::read::GzDecoder;
use object::elf;

use cli_support::{Cpu, core, ok, ptwalk, scratch};

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The guest's meta.json and its table pages (PA, bytes).
fn extract(name: &str) -> (serde_json::Value, Vec<(u64, Vec<u8>)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/guests")
        .join(name);
    let meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let mut raw = Vec::new();
    GzDecoder::new(&std::fs::read(dir.join("tables.bin.gz")).unwrap()[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw.len() % 4104, 0, "{name}: whole records");
    let pages = raw
        .chunks_exact(4104)
        .map(|r| {
            (
                u64::from_le_bytes(r[..8].try_into().unwrap()),
                r[8..].to_vec(),
            )
        })
        .collect();
    (meta, pages)
}

/// A sparse raw image of `size` bytes with `pages` in place.
fn raw_image(path: &Path, size: u64, pages: &[(u64, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (pa, bytes) in pages {
        f.write_all_at(bytes, *pa).unwrap();
    }
}

/// An ELF32 core as QEMU's `dump-guest-memory` writes one: a `QEMU` note
/// per vCPU (`QEMUCPUState`: CR0 at 0x188, CR3 at 0x1a0, CR4 at 0x1a8) and
/// one `PT_LOAD` of all memory, from `raw`.
fn qemu_core(path: &Path, raw: &[u8], cr0: u64, cr3s: &[u64], cr4: u64) {
    let cpus: Vec<Cpu> = cr3s.iter().map(|&cr3| Cpu { cr0, cr3, cr4 }).collect();
    std::fs::write(path, core(false, elf::EM_386, &cpus, &[(0, raw)])).unwrap();
}

/// (root, how) of each TSV line.
fn lines(tsv: &str) -> Vec<(u64, String)> {
    tsv.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "{l}");
            (
                u64::from_str_radix(f[0].trim_start_matches("0x"), 16).unwrap(),
                f[1].to_string(),
            )
        })
        .collect()
}

#[test]
fn i686_guest_roots_are_found_from_the_image_alone() {
    let (meta, pages) = extract("i686");
    assert_eq!(meta["mode"], "i686");
    let mut want: Vec<u64> = meta["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| hex(&r["pa"]))
        .collect();
    want.sort_unstable();
    let cr3s: Vec<u64> = meta["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| hex(&v["cr3"]))
        .collect();
    let dir = scratch("i686");
    let raw = dir.join("mem.raw");
    raw_image(&raw, meta["memory_bytes"].as_u64().unwrap(), &pages);
    let raw = raw.to_str().unwrap();
    let found = |out: &str| {
        let mut r: Vec<u64> = lines(out).iter().map(|l| l.0).collect();
        r.sort_unstable();
        r
    };

    // From the first vCPU's root: it, then the others by PA, all `like`.
    let like = ok(&ptwalk(&[
        "roots",
        "--image",
        raw,
        "--like",
        &format!("{:#x}", cr3s[0]),
    ]));
    assert_eq!(found(&like), want, "{like}");
    let l = lines(&like);
    assert_eq!(l[0].0, cr3s[0] & !0xFFF);
    assert!(l.iter().all(|(_, how)| how == "like"), "{like}");
    assert!(l[1..].windows(2).all(|w| w[0].0 < w[1].0), "{like}");

    // With nothing known, the scan finds the same.
    let scan = ok(&ptwalk(&["roots", "--image", raw]));
    assert_eq!(found(&scan), want, "{scan}");
    assert!(lines(&scan).iter().all(|(_, how)| how == "scan"), "{scan}");

    // JSON: one object per root, the same roots.
    let json = ok(&ptwalk(&["roots", "--image", raw, "--format", "json"]));
    let mut from_json: Vec<u64> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["kernel"].as_u64().unwrap() > 0, "{l}");
            hex(&v["root"])
        })
        .collect();
    from_json.sort_unstable();
    assert_eq!(from_json, want);

    // A QEMU core of the same memory: the vCPUs' roots first, as cpuN.
    let image = std::fs::read(raw).unwrap();
    let core = dir.join("core.elf");
    let cr0 = hex(&meta["vcpus"][0]["cr0"]);
    let cr4 = hex(&meta["vcpus"][0]["cr4"]);
    qemu_core(&core, &image, cr0, &cr3s, cr4);
    let out = ok(&ptwalk(&["roots", "--image", core.to_str().unwrap()]));
    assert_eq!(found(&out), want, "{out}");
    let l = lines(&out);
    for (i, &cr3) in cr3s.iter().enumerate() {
        assert_eq!(l[i], (cr3 & !0xFFF, format!("cpu{i}")), "{out}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
