//! Fuzz target `dump`: arbitrary bytes as a dump file (ELF core, LiME
//! capture or raw image) and an arbitrary `--base`, through the CLI's
//! parser (`src/bin/ptwalk/dump.rs`, included as is). It must never
//! panic, and whatever it accepts must be usable: every segment inside
//! the file, non-empty, below the 52-bit limit, sorted, disjoint and
//! merged where the file holds neighbours back to back; `file_offset`
//! agrees with the segments at every edge; vCPU registers come only from
//! ELF cores; errors are one line.
//!
//! Input: byte 0 bit 0 says whether a base is given, bytes 1–8 are the
//! base (`u64` little-endian), the rest is the file.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// What `dump.rs` needs from the binary's `input` module: only
/// `Dump::open` (not fuzzed here) reads files.
#[allow(dead_code)]
mod input {
    use std::path::Path;

    pub struct Bytes(Vec<u8>);

    impl AsRef<[u8]> for Bytes {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    pub fn load(path: &Path) -> Result<Bytes, String> {
        std::fs::read(path).map(Bytes).map_err(|e| e.to_string())
    }
}

#[path = "../../src/bin/ptwalk/dump.rs"]
#[allow(dead_code, clippy::all)]
mod dump;

use dump::{Bad, Kind, Segment, file_offset, parse};

const PA_LIMIT: u64 = 1 << 52;

/// `file_offset` at physical address `pa`, which lies in `segs[i]` or,
/// for `None`, in no segment.
fn probe(segs: &[Segment], pa: u64, within: Option<usize>) {
    for len in [1, 4096, u64::MAX] {
        let want = within.map(|i| {
            let s = &segs[i];
            (s.offset + (pa - s.pa), len.min(s.end() - pa))
        });
        assert_eq!(
            file_offset(segs, pa, len),
            want,
            "file_offset({pa:#x}, {len:#x})"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_at_checked(9) else {
        return;
    };
    let base = (head[0] & 1 != 0).then(|| u64::from_le_bytes(head[1..9].try_into().unwrap()));
    let (kind, segs, cpus) = match parse(data, base) {
        Ok(r) => r,
        Err(Bad::Elf(m) | Bad::Lime(m) | Bad::Other(m)) => {
            assert!(!m.contains('\n'), "a two-line error: {m:?}");
            return;
        }
    };
    let is_elf = data.starts_with(b"\x7fELF");
    let is_lime = data.starts_with(&dump::LIME_MAGIC.to_le_bytes());
    match kind {
        Kind::Raw => {
            assert!(!is_elf && !is_lime, "a core or capture read as raw");
            let want: Vec<Segment> = if data.is_empty() {
                Vec::new()
            } else {
                vec![Segment {
                    pa: base.unwrap_or(0),
                    len: data.len() as u64,
                    offset: 0,
                }]
            };
            assert_eq!(segs, want, "raw image is not one segment at its base");
        }
        Kind::Elf { bits, machine } => {
            assert!(is_elf && base.is_none());
            assert_eq!(bits, if data[4] == 1 { 32 } else { 64 });
            assert!(machine == 3 || machine == 62, "machine {machine}");
        }
        Kind::Lime => assert!(is_lime && base.is_none()),
    }
    assert!(
        cpus.is_empty() || matches!(kind, Kind::Elf { .. }),
        "vCPU registers from a {kind:?}"
    );
    if kind != Kind::Raw {
        let total: u64 = segs.iter().map(|s| s.len).sum();
        assert!(
            total >= dump::TABLE_BYTES,
            "{total} bytes of memory accepted"
        );
    }
    for s in &segs {
        assert!(s.len > 0, "empty segment {s:?}");
        assert!(
            s.offset
                .checked_add(s.len)
                .is_some_and(|e| e <= data.len() as u64),
            "segment {s:?} outside the {}-byte file",
            data.len()
        );
        assert!(
            s.pa.checked_add(s.len).is_some_and(|e| e <= PA_LIMIT),
            "{s:?} past 52 bits"
        );
        // The CLI slices the file like this.
        let _ = &data[s.offset as usize..][..s.len as usize];
    }
    for w in segs.windows(2) {
        assert!(w[0].end() <= w[1].pa, "unsorted or overlapping: {w:?}");
        assert!(
            !(w[0].end() == w[1].pa && w[0].offset + w[0].len == w[1].offset),
            "not merged: {w:?}"
        );
    }
    for (i, s) in segs.iter().enumerate() {
        probe(&segs, s.pa, Some(i));
        probe(&segs, s.pa + s.len / 2, Some(i));
        probe(&segs, s.end() - 1, Some(i));
        let next_starts_here = segs.get(i + 1).is_some_and(|n| n.pa == s.end());
        if !next_starts_here {
            probe(&segs, s.end(), None);
        }
        let prev_ends_here = i > 0 && segs[i - 1].end() == s.pa;
        if s.pa > 0 && !prev_ends_here {
            probe(&segs, s.pa - 1, None);
        }
    }
});
