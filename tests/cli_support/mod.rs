//! What the CLI tests share: running the `ptwalk` binary and judging its
//! output, scratch directories, and QEMU-style ELF cores (a `CORE` and a
//! `QEMU` note per vCPU, then one `PT_LOAD` per physical segment), built
//! with `object`'s writer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use object::Endianness;
use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, Writer};

/// Runs `ptwalk` with `args`.
pub fn ptwalk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptwalk"))
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of a successful run (its stderr in the failure message).
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Exit status 2, one line naming `needle`, nothing on stdout, no panic.
pub fn fails(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("ptwalk: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err:?}");
    assert!(o.stdout.is_empty());
}

/// A fresh directory for one test (named after the test binary and `name`).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ptwalk-{}-{}-{name}.d",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// One vCPU's control registers for a QEMU note.
#[derive(Clone, Copy)]
pub struct Cpu {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
}

/// QEMU's `QEMUCPUState` (version 1, 0x1b8 bytes): CR0..CR4 at byte 392
/// (CR2 set to a decoy, so that no reader takes it for CR3).
fn qemu_state(c: &Cpu) -> Vec<u8> {
    let mut d = vec![0u8; 0x1b8];
    d[0..4].copy_from_slice(&1u32.to_le_bytes());
    d[4..8].copy_from_slice(&0x1b8u32.to_le_bytes());
    for (n, v) in [(0, c.cr0), (2, 0xdead_beef), (3, c.cr3), (4, c.cr4)] {
        d[392 + 8 * n..400 + 8 * n].copy_from_slice(&v.to_le_bytes());
    }
    d
}

/// One ELF note: name (NUL-terminated, padded), type, descriptor.
pub fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend((name.len() as u32 + 1).to_le_bytes());
    n.extend((desc.len() as u32).to_le_bytes());
    n.extend(kind.to_le_bytes());
    n.extend(name);
    n.push(0);
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

/// An x86 ELF core as QEMU writes one: a note segment (a `CORE` note per
/// vCPU, then a `QEMU` note per vCPU), then one `PT_LOAD` per segment
/// (`p_paddr`), in the order given (not necessarily by address).
pub fn core(is_64: bool, machine: u16, cpus: &[Cpu], segs: &[(u64, &[u8])]) -> Vec<u8> {
    let mut notes = Vec::new();
    for _ in cpus {
        notes.extend(note(b"CORE", 1, &[0x5a; 144]));
    }
    for c in cpus {
        notes.extend(note(b"QEMU", 0, &qemu_state(c)));
    }
    let mut buf = Vec::new();
    let mut w = Writer::new(Endianness::Little, is_64, &mut buf);
    w.reserve_file_header();
    w.reserve_program_headers(1 + segs.len() as u32);
    let note_off = w.reserve(notes.len(), 4);
    let offs: Vec<usize> = segs.iter().map(|(_, b)| w.reserve(b.len(), 8)).collect();
    w.write_file_header(&FileHeader {
        os_abi: 0,
        abi_version: 0,
        e_type: elf::ET_CORE,
        e_machine: machine,
        e_entry: 0,
        e_flags: 0,
    })
    .unwrap();
    w.write_align_program_headers();
    w.write_program_header(&ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: 0,
        p_offset: note_off as u64,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: notes.len() as u64,
        p_memsz: notes.len() as u64,
        p_align: 0,
    });
    for ((pa, b), off) in segs.iter().zip(&offs) {
        w.write_program_header(&ProgramHeader {
            p_type: elf::PT_LOAD,
            p_flags: 0,
            p_offset: *off as u64,
            p_vaddr: 0,
            p_paddr: *pa,
            p_filesz: b.len() as u64,
            p_memsz: b.len() as u64,
            p_align: 0,
        });
    }
    w.pad_until(note_off);
    w.write(&notes);
    for ((_, b), off) in segs.iter().zip(&offs) {
        w.pad_until(*off);
        w.write(b);
    }
    buf
}
