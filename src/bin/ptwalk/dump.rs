//! Memory dump files: what kind of file the input is, which physical
//! ranges it holds and where, and what its vCPUs' control registers say.
//!
//! Three kinds, told apart by their first bytes (never by the file name):
//!
//! - **ELF cores** (`\x7fELF`: QEMU `dump-guest-memory`, libvirt
//!   `virsh dump --memory-only`, kdump vmcores), ELF32 or ELF64, read with
//!   the `object` crate. Each `PT_LOAD` segment holds the physical range
//!   `p_paddr .. p_paddr + p_filesz` at file offset `p_offset`. QEMU's
//!   cores also carry one `QEMU` note per vCPU (`QEMUCPUState`: version,
//!   size, the general registers, ten segment descriptors of 24 bytes,
//!   then CR0..CR4 as five `u64` at byte 392), read here for CR0, CR3 and
//!   CR4.
//! - **LiME captures** (a 32-byte header with magic `0x4C694D45`, version
//!   1, first and last physical address (inclusive), 8 reserved bytes),
//!   the range's bytes right after it, and the next header after those.
//! - **Raw images**: anything else; byte `i` is physical address
//!   `BASE + i` (`--base`).
//!
//! Physical addresses no segment holds are not memory: a table there is a
//! fault, never zeros. Bytes past `p_filesz` (an ELF segment whose
//! `p_memsz` is larger) are not in the file and count as absent too.
//!
//! Why this lives in the binary and not in the library: the readers need
//! a file, a memory map and the `object` crate, none of which the `no_std`
//! walker should depend on, and what they produce is plain library input
//! (a [`Regions`](ptwalk::Regions) of [`Image`]s over the mapped file). A
//! library module can come later, under its own feature, if other tools
//! want it.

// "LiME" is the format's name, not code.
#![allow(clippy::doc_markdown)]

use std::path::{Path, PathBuf};

use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, elf};
use ptwalk::{Image, PhysAddr};

use crate::input::{self, Bytes};

/// The smallest table any mode reads (an i686 or long-mode table; a PAE
/// directory-pointer table is smaller but sits in a page like the rest).
pub const TABLE_BYTES: u64 = 4096;

/// Physical addresses at or above this are beyond any x86 processor
/// (MAXPHYADDR is at most 52): a segment reaching there is absurd.
const PA_LIMIT: u64 = 1 << 52;

/// Where the QEMU note keeps CR0 (then CR1..CR4, eight bytes each).
const QEMU_CR0: usize = 8 + 18 * 8 + 10 * 24;
/// The smallest `QEMUCPUState` that holds CR0..CR4.
const QEMU_STATE_MIN: usize = QEMU_CR0 + 5 * 8;

/// LiME's header magic ("EMiL" in the file, little-endian).
pub const LIME_MAGIC: u32 = 0x4C69_4D45;
/// Bytes of a LiME range header.
pub const LIME_HEADER: usize = 32;

/// What kind of file the input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Raw physical memory at a base address.
    Raw,
    /// An ELF core: 32 or 64 (its class) and its machine (`EM_386`,
    /// `EM_X86_64`).
    Elf { bits: u8, machine: u16 },
    /// A LiME capture.
    Lime,
}

/// One physical range the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First physical address.
    pub pa: u64,
    /// Bytes.
    pub len: u64,
    /// Offset of the first byte in the file.
    pub offset: u64,
}

impl Segment {
    /// One past the last physical address.
    pub const fn end(&self) -> u64 {
        self.pa + self.len
    }
}

/// One vCPU's control registers, from a QEMU note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
}

/// The paging mode a vCPU's registers (and the core's machine) select.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// CR0.PG clear: no page tables.
    Off,
    /// 32-bit paging; `pse` is CR4.PSE.
    I686 { pse: bool },
    /// PAE paging (CR4.PAE, not long mode).
    Pae,
    /// Long mode (an `EM_X86_64` core): 4-level, or 5-level with CR4.LA57.
    Long { la57: bool },
}

impl CpuMode {
    /// The mode of `cpu` in a core whose machine is `machine`.
    pub fn of(cpu: &Cpu, machine: u16) -> CpuMode {
        const PG: u64 = 1 << 31;
        const PSE: u64 = 1 << 4;
        const PAE: u64 = 1 << 5;
        const LA57: u64 = 1 << 12;
        if cpu.cr0 & PG == 0 {
            CpuMode::Off
        } else if machine == elf::EM_X86_64 {
            // QEMU writes EM_X86_64 exactly when the vCPUs are in long mode
            // (EFER.LMA), which its note does not carry.
            CpuMode::Long {
                la57: cpu.cr4 & LA57 != 0,
            }
        } else if cpu.cr4 & PAE != 0 {
            CpuMode::Pae
        } else {
            CpuMode::I686 {
                pse: cpu.cr4 & PSE != 0,
            }
        }
    }
}

impl std::fmt::Display for CpuMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuMode::Off => f.write_str("paging off (CR0.PG clear)"),
            CpuMode::I686 { pse: true } => f.write_str("i686 (CR4.PSE set: 4 MiB pages)"),
            CpuMode::I686 { pse: false } => f.write_str("i686 (CR4.PSE clear: no 4 MiB pages)"),
            CpuMode::Pae => f.write_str("PAE (CR4.PAE set)"),
            CpuMode::Long { la57: false } => f.write_str("4-level long mode"),
            CpuMode::Long { la57: true } => f.write_str("5-level long mode (CR4.LA57)"),
        }
    }
}

/// An opened input: the mapped file, its segments, its vCPUs.
pub struct Dump {
    pub path: PathBuf,
    bytes: Bytes,
    pub kind: Kind,
    /// Sorted by PA, disjoint, adjacent ones merged where the file holds
    /// them back to back.
    pub segments: Vec<Segment>,
    /// vCPUs in note order (cpu0 first); empty without QEMU notes.
    pub cpus: Vec<Cpu>,
}

impl Dump {
    /// Opens `path` (see [`input::load`]) and reads its layout. `base` is
    /// for raw images only.
    ///
    /// # Errors
    ///
    /// One line: the file cannot be opened, is corrupt or truncated, its
    /// segments overlap or are absurd, it holds less than one table, or
    /// `--base` was given for a file that places its own ranges.
    pub fn open(path: &Path, base: Option<u64>) -> Result<Dump, OpenError> {
        let bytes = input::load(path).map_err(|msg| OpenError {
            msg,
            unopened: true,
        })?;
        let (kind, segments, cpus) = parse(bytes.as_ref(), base).map_err(|e| OpenError {
            msg: match e {
                Bad::Elf(why) => format!("{path:?} is not a valid ELF core: {why}"),
                Bad::Lime(why) => format!("{path:?} is not a valid LiME capture: {why}"),
                Bad::Other(why) => format!("image {path:?}: {why}"),
            },
            unopened: false,
        })?;
        Ok(Dump {
            path: path.to_path_buf(),
            bytes,
            kind,
            segments,
            cpus,
        })
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// One image per segment, over the mapped file (for
    /// [`Regions`](ptwalk::Regions)).
    pub fn images(&self) -> Vec<Image<&[u8]>> {
        let b = self.bytes();
        self.segments
            .iter()
            .map(|s| {
                let off = s.offset as usize;
                Image::new(PhysAddr(s.pa), &b[off..off + s.len as usize])
            })
            .collect()
    }

    /// What the file is, for messages: "ELF64 core (2 segments)".
    pub fn describe(&self) -> String {
        let n = self.segments.len();
        let segs = format!("{n} segment{}", if n == 1 { "" } else { "s" });
        match self.kind {
            Kind::Raw => "raw image".to_string(),
            Kind::Elf { bits, .. } => format!("ELF{bits} core ({segs})"),
            Kind::Lime => format!("LiME capture ({segs})"),
        }
    }

    /// The physical ranges held, as `0x0..0x8000000, 0xfffc0000..0x100000000`.
    pub fn ranges(&self) -> String {
        let r: Vec<String> = self
            .segments
            .iter()
            .map(|s| format!("{:#x}..{:#x}", s.pa, s.end()))
            .collect();
        r.join(", ")
    }

    /// The ELF machine, `EM_386` for files that do not say.
    pub fn machine(&self) -> u16 {
        match self.kind {
            Kind::Elf { machine, .. } => machine,
            _ => elf::EM_386,
        }
    }
}

/// Where physical `[pa, pa + len)` starts in the file: the offset of `pa`
/// and how many of the `len` bytes the segment holding `pa` holds (all of
/// them, unless the range runs into the next segment); `None` when no
/// segment holds `pa`.
pub fn file_offset(segments: &[Segment], pa: u64, len: u64) -> Option<(u64, u64)> {
    let i = segments.partition_point(|s| s.pa <= pa).checked_sub(1)?;
    let s = &segments[i];
    (pa < s.end()).then(|| (s.offset + (pa - s.pa), len.min(s.end() - pa)))
}

/// Why [`Dump::open`] failed: one line, and whether the file could not
/// even be opened (rather than read and found wrong).
#[derive(Debug)]
pub struct OpenError {
    pub msg: String,
    pub unopened: bool,
}

/// Why a file was refused.
#[derive(Debug)]
pub enum Bad {
    Elf(String),
    Lime(String),
    Other(String),
}

/// The file's layout: its kind, its segments (checked, sorted, merged) and
/// its vCPUs.
///
/// # Errors
///
/// [`Bad`] saying what is wrong.
pub fn parse(data: &[u8], base: Option<u64>) -> Result<(Kind, Vec<Segment>, Vec<Cpu>), Bad> {
    let (kind, segments, cpus) = if data.starts_with(&elf::ELFMAG) {
        refuse_base(base, "an ELF core")?;
        let (kind, segs, cpus) = parse_elf(data).map_err(Bad::Elf)?;
        (
            kind,
            check(segs, data.len() as u64).map_err(Bad::Elf)?,
            cpus,
        )
    } else if data.len() >= 4
        && u32::from_le_bytes([data[0], data[1], data[2], data[3]]) == LIME_MAGIC
    {
        refuse_base(base, "a LiME capture")?;
        let segs = parse_lime(data).map_err(Bad::Lime)?;
        (
            Kind::Lime,
            check(segs, data.len() as u64).map_err(Bad::Lime)?,
            Vec::new(),
        )
    } else {
        let len = data.len() as u64;
        let pa = base.unwrap_or(0);
        if pa.checked_add(len).is_none_or(|end| end > PA_LIMIT) {
            return Err(Bad::Other(format!(
                "{len} bytes at base {pa:#x} run past the 52-bit physical address space"
            )));
        }
        let segs = if len == 0 {
            Vec::new()
        } else {
            vec![Segment { pa, len, offset: 0 }]
        };
        (Kind::Raw, segs, Vec::new())
    };
    let total: u64 = segments.iter().map(|s| s.len).sum();
    if kind != Kind::Raw && total < TABLE_BYTES {
        let what = if kind == Kind::Lime {
            "capture"
        } else {
            "core"
        };
        return Err(Bad::Other(format!(
            "the {what} holds {total} bytes of memory, less than one page table ({TABLE_BYTES} bytes)"
        )));
    }
    Ok((kind, segments, cpus))
}

fn refuse_base(base: Option<u64>, what: &str) -> Result<(), Bad> {
    match base {
        Some(_) => Err(Bad::Other(format!(
            "--base is for raw images; this is {what}, which places its own physical ranges"
        ))),
        None => Ok(()),
    }
}

/// Sorts the segments, refuses overlaps and absurd ranges, merges the ones
/// the file holds back to back.
fn check(mut segs: Vec<Segment>, file_len: u64) -> Result<Vec<Segment>, String> {
    for (i, s) in segs.iter().enumerate() {
        let end = s.pa.checked_add(s.len).filter(|&e| e <= PA_LIMIT);
        if end.is_none() {
            return Err(format!(
                "segment {i} ({:#x} bytes at PA {:#x}) runs past the 52-bit physical address space",
                s.len, s.pa
            ));
        }
        if s.offset.checked_add(s.len).is_none_or(|e| e > file_len) {
            return Err(format!(
                "segment {i} (PA {:#x}..{:#x}) lies past the end of the file ({file_len} bytes): truncated",
                s.pa,
                s.pa + s.len
            ));
        }
    }
    segs.retain(|s| s.len > 0);
    segs.sort_by_key(|s| s.pa);
    for w in segs.windows(2) {
        if w[1].pa < w[0].end() {
            return Err(format!(
                "segments overlap in physical memory: {:#x}..{:#x} and {:#x}..{:#x}",
                w[0].pa,
                w[0].end(),
                w[1].pa,
                w[1].end()
            ));
        }
    }
    if segs.is_empty() {
        return Err("it holds no memory (no non-empty segment)".into());
    }
    let mut merged: Vec<Segment> = Vec::with_capacity(segs.len());
    for s in segs {
        match merged.last_mut() {
            Some(m) if m.end() == s.pa && m.offset + m.len == s.offset => m.len += s.len,
            _ => merged.push(s),
        }
    }
    Ok(merged)
}

fn parse_elf(data: &[u8]) -> Result<(Kind, Vec<Segment>, Vec<Cpu>), String> {
    match data.get(4) {
        Some(&elf::ELFCLASS32) => elf_segments::<elf::FileHeader32<Endianness>>(data, 32),
        Some(&elf::ELFCLASS64) => elf_segments::<elf::FileHeader64<Endianness>>(data, 64),
        Some(c) => Err(format!("unknown ELF class {c}")),
        None => Err("truncated ELF header".into()),
    }
}

fn elf_segments<H: FileHeader<Endian = Endianness>>(
    data: &[u8],
    bits: u8,
) -> Result<(Kind, Vec<Segment>, Vec<Cpu>), String> {
    let e = |what: &str, err: object::read::Error| format!("{what}: {err}");
    let header = H::parse(data).map_err(|err| e("bad header", err))?;
    let endian = header.endian().map_err(|err| e("bad header", err))?;
    if endian != Endianness::Little {
        return Err("big-endian, not an x86 core".into());
    }
    if header.e_type(endian) != elf::ET_CORE {
        return Err(format!(
            "ELF type {} is not a core dump (ET_CORE)",
            header.e_type(endian)
        ));
    }
    let machine = header.e_machine(endian);
    if machine != elf::EM_386 && machine != elf::EM_X86_64 {
        return Err(format!(
            "machine {machine} is not x86 (EM_386 or EM_X86_64)"
        ));
    }
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|err| e("bad program headers", err))?;
    let mut segs = Vec::new();
    let mut cpus = Vec::new();
    for ph in phdrs {
        match ph.p_type(endian) {
            elf::PT_LOAD => segs.push(Segment {
                pa: ph.p_paddr(endian).into(),
                len: ph.p_filesz(endian).into(),
                offset: ph.p_offset(endian).into(),
            }),
            elf::PT_NOTE => {
                let Some(mut notes) = ph
                    .notes(endian, data)
                    .map_err(|err| e("bad note segment", err))?
                else {
                    continue;
                };
                while let Some(note) = notes.next().map_err(|err| e("bad note", err))? {
                    if note.name() != b"QEMU" {
                        continue;
                    }
                    cpus.push(qemu_cpu(note.desc()).ok_or_else(|| {
                        format!(
                            "QEMU note {} is {} bytes, too short for CR0..CR4",
                            cpus.len(),
                            note.desc().len()
                        )
                    })?);
                }
            }
            _ => {}
        }
    }
    Ok((Kind::Elf { bits, machine }, segs, cpus))
}

/// CR0, CR3 and CR4 from a `QEMUCPUState` note's contents.
fn qemu_cpu(desc: &[u8]) -> Option<Cpu> {
    let size = u32::from_le_bytes(desc.get(4..8)?.try_into().ok()?) as usize;
    if size < QEMU_STATE_MIN || desc.len() < QEMU_STATE_MIN {
        return None;
    }
    let cr = |n: usize| {
        let at = QEMU_CR0 + 8 * n;
        u64::from_le_bytes(desc[at..at + 8].try_into().unwrap_or_default())
    };
    Some(Cpu {
        cr0: cr(0),
        cr3: cr(3),
        cr4: cr(4),
    })
}

fn parse_lime(data: &[u8]) -> Result<Vec<Segment>, String> {
    let mut segs = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let n = segs.len();
        let Some(h) = data.get(at..at + LIME_HEADER) else {
            return Err(format!(
                "header {n} at offset {at:#x} is cut short ({} of {LIME_HEADER} bytes)",
                data.len() - at
            ));
        };
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let quad = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or_default());
        if word(0) != LIME_MAGIC {
            return Err(format!(
                "no LiME header at offset {at:#x} (after range {}): bad magic {:#010x}",
                n.wrapping_sub(1),
                word(0)
            ));
        }
        if word(4) != 1 {
            return Err(format!("header {n} has version {}, not 1", word(4)));
        }
        let (s, e) = (quad(8), quad(16));
        // e_addr is inclusive.
        let Some(len) = e.checked_sub(s).and_then(|d| d.checked_add(1)) else {
            return Err(format!(
                "header {n} ends ({e:#x}) before it starts ({s:#x})"
            ));
        };
        let start = (at + LIME_HEADER) as u64;
        let left = data.len() as u64 - start;
        if len > left {
            return Err(format!(
                "range {n} ({s:#x}..={e:#x}) claims {len:#x} bytes but the file holds {left:#x} after its header: truncated or lying"
            ));
        }
        segs.push(Segment {
            pa: s,
            len,
            offset: start,
        });
        at = (start + len) as usize;
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lime_header(s: u64, e: u64) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(LIME_MAGIC.to_le_bytes());
        h.extend(1u32.to_le_bytes());
        h.extend(s.to_le_bytes());
        h.extend(e.to_le_bytes());
        h.extend([0u8; 8]);
        h
    }

    #[test]
    fn lime_ranges_are_read_back_to_back() {
        let mut f = lime_header(0x1000, 0x2fff);
        f.extend(vec![1u8; 0x2000]);
        f.extend(lime_header(0x8000, 0x8fff));
        f.extend(vec![2u8; 0x1000]);
        let (kind, segs, cpus) = parse(&f, None).unwrap();
        assert_eq!(kind, Kind::Lime);
        assert!(cpus.is_empty());
        assert_eq!(
            segs,
            [
                Segment {
                    pa: 0x1000,
                    len: 0x2000,
                    offset: 32
                },
                Segment {
                    pa: 0x8000,
                    len: 0x1000,
                    offset: 32 + 0x2000 + 32
                },
            ]
        );
    }

    #[test]
    fn lying_lime_headers_are_refused() {
        let mut f = lime_header(0x1000, 0x2fff);
        f.extend(vec![1u8; 0x1000]);
        let Err(Bad::Lime(why)) = parse(&f, None) else {
            panic!()
        };
        assert!(why.contains("truncated or lying"), "{why}");
        let f = lime_header(0x2000, 0x1000);
        let Err(Bad::Lime(why)) = parse(&f, None) else {
            panic!()
        };
        assert!(why.contains("before it starts"), "{why}");
        let mut f = lime_header(0, 0xfff);
        f.extend(vec![0u8; 0x1000]);
        f.extend([0u8; 7]);
        let Err(Bad::Lime(why)) = parse(&f, None) else {
            panic!()
        };
        assert!(why.contains("cut short"), "{why}");
        let mut f = lime_header(0, 0xfff);
        f.extend(vec![0u8; 0x1000]);
        f.extend(lime_header(0x800, 0x17ff));
        f.extend(vec![0u8; 0x1000]);
        let Err(Bad::Lime(why)) = parse(&f, None) else {
            panic!()
        };
        assert!(why.contains("overlap"), "{why}");
        let mut f = lime_header(u64::MAX - 0xfff, u64::MAX);
        f.extend(vec![0u8; 0x1000]);
        let Err(Bad::Lime(why)) = parse(&f, None) else {
            panic!()
        };
        assert!(why.contains("52-bit"), "{why}");
    }

    #[test]
    fn raw_is_one_segment_at_its_base() {
        let (kind, segs, _) = parse(&[0u8; 0x2000], Some(0x10_0000)).unwrap();
        assert_eq!(kind, Kind::Raw);
        assert_eq!(
            segs,
            [Segment {
                pa: 0x10_0000,
                len: 0x2000,
                offset: 0
            }]
        );
        assert!(matches!(parse(b"\x7fELF", Some(0)), Err(Bad::Other(_))));
    }

    #[test]
    fn qemu_notes_give_cr0_cr3_cr4_and_short_ones_nothing() {
        let mut d = vec![0u8; QEMU_STATE_MIN + 8];
        let size = d.len() as u32;
        d[4..8].copy_from_slice(&size.to_le_bytes());
        for (n, v) in [(0usize, 0x8005_0033u64), (3, 0x01ad_9018), (4, 0x690)] {
            d[QEMU_CR0 + 8 * n..][..8].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            qemu_cpu(&d),
            Some(Cpu {
                cr0: 0x8005_0033,
                cr3: 0x01ad_9018,
                cr4: 0x690
            })
        );
        // A size field or a note too short for CR4 carries no registers.
        assert_eq!(qemu_cpu(&d[..QEMU_STATE_MIN - 1]), None);
        d[4..8].copy_from_slice(&(QEMU_STATE_MIN as u32 - 8).to_le_bytes());
        assert_eq!(qemu_cpu(&d), None);
        assert_eq!(qemu_cpu(&[1, 0, 0]), None);
    }

    #[test]
    fn modes_come_from_the_registers() {
        let cpu = |cr0, cr4| Cpu {
            cr0,
            cr3: 0x1000,
            cr4,
        };
        assert_eq!(
            CpuMode::of(&cpu(0x8005_0033, 0x690), elf::EM_386),
            CpuMode::I686 { pse: true }
        );
        assert_eq!(
            CpuMode::of(&cpu(0x8005_0033, 0x680), elf::EM_386),
            CpuMode::I686 { pse: false }
        );
        assert_eq!(
            CpuMode::of(&cpu(0x8005_0033, 0x6b0), elf::EM_386),
            CpuMode::Pae
        );
        assert_eq!(
            CpuMode::of(&cpu(0x8005_0033, 0x16b0), elf::EM_X86_64),
            CpuMode::Long { la57: true }
        );
        assert_eq!(CpuMode::of(&cpu(0x11, 0x690), elf::EM_386), CpuMode::Off);
    }
}
