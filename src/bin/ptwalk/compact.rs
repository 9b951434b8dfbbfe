//! `ptwalk compact`: rebuild a snapshot that keeps sharing and frame
//! identity, stream it to `OUT.img` + `OUT.json` as a pair, optionally
//! verify it.
//!
//! Memory stays bounded whatever the snapshot's size: the compactor reads
//! only tables (through the mapping), the data is copied extent by extent
//! from the input file straight to the output through one 1 MiB buffer,
//! and verification releases the mapped pages it has compared as it goes.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ptwalk::compact::{Chunk, Compactor, Layout, Policy, Stats, verify_with_progress};
use ptwalk::{Image, PagingMode, PhysAddr, PhysMem};
use serde_json::json;
use xxhash_rust::xxh3::Xxh3;

use crate::dump::{Segment, file_offset};
use crate::input;
use crate::pair::{Interrupt, Pair, with_ext};

/// Drops this process's resident copy of a whole mapped file (the pages
/// stay in the page cache and are read again if touched).
fn release(mapped: &[u8]) {
    input::release(mapped, mapped.len());
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn stats_json(s: &Stats) -> serde_json::Value {
    json!({
        "pages_copied": s.pages_copied,
        "pages_deduplicated": s.pages_deduplicated,
        "frames_multi_size": s.frames_multi_size,
        "pages_skipped": s.pages_skipped,
        "device_pages_kept": s.device_pages_kept,
        "device_pages_dropped": s.device_pages_dropped,
        "large_pages_split": s.large_pages_split,
        "tables_written": s.tables_written,
        "aliases_linked": s.aliases_linked,
        "aliases_invalidated": s.aliases_invalidated,
        "aliases_materialized": s.aliases_materialized,
        "faults": s.faults,
        "data_bytes": s.data_bytes,
        "padding_bytes": s.padding_bytes,
        "table_bytes": s.table_bytes,
        "output_bytes": s.output_bytes,
    })
}

/// What `ptwalk compact` was asked to do, in paging mode `P`.
pub struct Job<'a, M: ?Sized, P> {
    /// The input memory (tables and page contents).
    pub mem: &'a M,
    /// The input's mapped bytes, released as they are compared.
    pub mapped: &'a [u8],
    /// The input file.
    pub image: &'a Path,
    /// Where the input file holds each physical range.
    pub segments: &'a [Segment],
    pub roots: &'a [PhysAddr],
    pub mode: P,
    /// The mode as `--mode` spells it (recorded in OUT.json: a raw image
    /// carries no mode of its own).
    pub mode_name: &'static str,
    pub policy: Policy,
    pub out_base: Option<u64>,
    pub out: &'a Path,
    pub verify: bool,
}

/// A failure: its one-line message and exit status.
pub type Failure = (String, u8);

fn fail(msg: String) -> Failure {
    (msg, 2)
}

/// Exit status for a signal, as a shell reports it.
fn signal_status(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(1)
}

fn interrupted(stop: &Interrupt) -> Result<(), Failure> {
    match stop.signal() {
        None => Ok(()),
        Some(sig) => Err((
            format!("interrupted by signal {sig}; nothing was written"),
            signal_status(sig),
        )),
    }
}

/// A bar on a terminal once the work has taken a moment.
struct Progress {
    start: Instant,
    tty: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            tty: io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn set(&mut self, template: &str, pos: u64, len: u64) {
        if !self.tty || self.start.elapsed() < Duration::from_millis(300) {
            return;
        }
        let b = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(template) {
                b.set_style(style);
            }
            b
        });
        b.set_length(len);
        b.set_position(pos);
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Streams the image to `file`, returning its XXH3-64 hash.
fn write_image<M: PhysMem + ?Sized, P>(
    layout: &Layout,
    job: &Job<'_, M, P>,
    file: &mut File,
    stop: &Interrupt,
    progress: &mut Progress,
) -> Result<u64, Failure> {
    let io_err = |e: io::Error| fail(format!("cannot write the image: {e}"));
    let input = File::open(job.image)
        .map_err(|e| fail(format!("cannot open image {:?}: {e}", job.image)))?;
    let zeros = vec![0u8; 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    let mut hash = Xxh3::new();
    let mut written = 0u64;
    let total = layout.len();
    for chunk in layout.chunks() {
        match chunk {
            Chunk::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(zeros.len() as u64) as usize;
                    file.write_all(&zeros[..k]).map_err(io_err)?;
                    hash.update(&zeros[..k]);
                    n -= k as u64;
                    written += k as u64;
                }
            }
            Chunk::Copy { src, len } => {
                // Read from the file, not through the mapping: no page
                // faults, and nothing of the input stays resident.
                let mut off = 0;
                while off < len {
                    let pa = src.0 + off;
                    // A copy may run from one segment into the next.
                    let (at, n) = file_offset(job.segments, pa, len - off).ok_or_else(|| {
                        fail(format!("PA {pa:#x} is in no segment of {:?}", job.image))
                    })?;
                    let n = n.min(buf.len() as u64) as usize;
                    input.read_exact_at(&mut buf[..n], at).map_err(|e| {
                        fail(format!(
                            "cannot read {:?} at offset {at:#x}: {e}",
                            job.image
                        ))
                    })?;
                    file.write_all(&buf[..n]).map_err(io_err)?;
                    hash.update(&buf[..n]);
                    off += n as u64;
                    written += n as u64;
                    interrupted(stop)?;
                }
            }
            Chunk::Bytes(b) => {
                file.write_all(b).map_err(io_err)?;
                hash.update(b);
                written += b.len() as u64;
            }
        }
        progress.set(
            "writing {bar:30} {bytes}/{total_bytes} {elapsed}",
            written,
            total,
        );
    }
    Ok(hash.digest())
}

/// Runs the job; `Ok(false)` when verification found differences.
pub fn run<M: PhysMem + ?Sized, P: PagingMode>(
    job: Job<'_, M, P>,
    out: &mut impl Write,
) -> Result<bool, Failure> {
    for p in [with_ext(job.out, ".img"), with_ext(job.out, ".json")] {
        if same_file(&p, job.image) {
            return Err(fail(format!(
                "refusing to overwrite the input image {:?}",
                job.image
            )));
        }
    }
    let stop = Interrupt::catch().map_err(|e| fail(format!("cannot catch signals: {e}")))?;
    // The temporary files first: an unwritable place fails before the work.
    let (pair, mut f_img, mut f_json) = Pair::create(job.out).map_err(fail)?;
    let mut progress = Progress::new();
    let mut compactor = Compactor::new_in(job.mode, job.mem, job.roots)
        .map_err(|e| fail(e.to_string()))?
        .policy(job.policy.clone());
    if let Some(base) = job.out_base {
        compactor = compactor.out_base(PhysAddr(base));
    }
    let layout = compactor
        .plan_with_progress(|space, spaces| {
            progress.set(
                "compacting {bar:30} space {pos}/{len} {elapsed}",
                space as u64 + 1,
                spaces as u64,
            );
        })
        .map_err(|e| fail(e.to_string()))?;
    interrupted(&stop)?;
    let hash = write_image(&layout, &job, &mut f_img, &stop, &mut progress)?;
    progress.finish();
    let file_name = pair
        .img
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sidecar = json!({
        "mode": job.mode_name,
        "base": format!("{:#x}", layout.base.0),
        "roots": layout.roots.iter().map(|r| format!("{:#x}", r.0)).collect::<Vec<_>>(),
        "tables_base": format!("{:#x}", layout.tables_base.0),
        "image": {
            "file": file_name,
            "bytes": layout.len(),
            "xxh3": format!("{hash:016x}"),
        },
        "device": layout.device.iter()
            .map(|r| json!([format!("{:#x}", r.start), format!("{:#x}", r.end)]))
            .collect::<Vec<_>>(),
        "stats": stats_json(&layout.stats),
    });
    writeln!(f_json, "{sidecar:#}").map_err(|e| fail(format!("cannot write the JSON: {e}")))?;
    interrupted(&stop)?;
    // From here the pair completes even if a signal arrives.
    let (img_path, json_path) = (pair.img.clone(), pair.json.clone());
    pair.commit(f_img, f_json).map_err(fail)?;

    let w = |e: io::Error| fail(e.to_string());
    writeln!(
        out,
        "wrote {} and {}",
        img_path.display(),
        json_path.display()
    )
    .map_err(w)?;
    for (k, v) in stats_json(&layout.stats).as_object().into_iter().flatten() {
        writeln!(out, "{k}\t{v}").map_err(w)?;
    }
    if !job.verify {
        return Ok(true);
    }
    verify_written(&job, &layout, &img_path, &stop, out)
}

/// Maps the written image and checks it against the input.
fn verify_written<M: PhysMem + ?Sized, P: PagingMode>(
    job: &Job<'_, M, P>,
    layout: &Layout,
    img_path: &Path,
    stop: &Interrupt,
    out: &mut impl Write,
) -> Result<bool, Failure> {
    let file = File::open(img_path).map_err(|e| fail(format!("cannot open {img_path:?}: {e}")))?;
    // SAFETY: read-only map of the file this process just wrote and renamed
    // into place; ptwalk never writes it again.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| fail(format!("cannot map {img_path:?}: {e}")))?;
    let compacted = Image::new(layout.base, &map[..]);
    let spinner = io::stderr().is_terminal().then(|| {
        let s = ProgressBar::new_spinner().with_message("verifying");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    });
    let report = verify_with_progress(
        job.mode,
        job.mem,
        job.roots,
        &compacted,
        &layout.roots,
        &job.policy,
        |_| {
            release(job.mapped);
            release(&map);
            if let Some(sig) = stop.signal() {
                let _ = out.flush();
                eprintln!("ptwalk: interrupted while verifying; the pair is complete");
                std::process::exit(i32::from(signal_status(sig)));
            }
        },
    );
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let w = |e: io::Error| fail(e.to_string());
    if report.is_ok() {
        writeln!(
            out,
            "verify\tok ({} pages, {} frames, {} aliases checked)",
            report.pages_checked, report.frames_compared, report.aliases_checked
        )
        .map_err(w)?;
        Ok(true)
    } else {
        writeln!(
            out,
            "verify\tFAILED ({} mismatches)",
            report.total_mismatches
        )
        .map_err(w)?;
        for m in &report.mismatches {
            eprintln!("ptwalk: verify: {m}");
        }
        Ok(false)
    }
}
