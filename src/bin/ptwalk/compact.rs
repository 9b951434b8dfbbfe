//! `ptwalk compact`: rebuild a snapshot with sharing preserved, write it
//! atomically, optionally verify it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use ptwalk::compact::{Compacted, Compactor, Policy, Stats, verify};
use ptwalk::{I686, PhysAddr, PhysMem};
use serde_json::json;

/// Writes `path` through a temporary file in the same directory, renamed
/// into place once complete: readers never see half a file.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        write(&mut w)?;
        w.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `OUT` + extension (`OUT.img`, `OUT.json`).
fn with_ext(out: &Path, ext: &str) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(ext);
    PathBuf::from(p)
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
        "pages_skipped": s.pages_skipped,
        "device_pages_kept": s.device_pages_kept,
        "device_pages_dropped": s.device_pages_dropped,
        "tables_written": s.tables_written,
        "aliases_linked": s.aliases_linked,
        "aliases_invalidated": s.aliases_invalidated,
        "aliases_materialized": s.aliases_materialized,
        "faults": s.faults,
    })
}

/// What `ptwalk compact` was asked to do.
pub struct Job<'a, M: ?Sized> {
    pub mem: &'a M,
    pub image: &'a Path,
    pub roots: &'a [PhysAddr],
    pub mode: I686,
    pub policy: Policy,
    pub out_base: u64,
    pub out: &'a Path,
    pub verify: bool,
}

/// Runs the job; `Ok(false)` when verification found differences.
pub fn run<M: PhysMem + ?Sized>(job: Job<'_, M>, out: &mut impl Write) -> Result<bool, String> {
    let img_path = with_ext(job.out, ".img");
    let json_path = with_ext(job.out, ".json");
    for p in [&img_path, &json_path] {
        if same_file(p, job.image) {
            return Err(format!(
                "refusing to overwrite the input image {}",
                job.image.display()
            ));
        }
    }
    // A progress bar, on a terminal, once the work has taken a moment.
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let tty = io::IsTerminal::is_terminal(&io::stderr());
    let compacted: Compacted = Compactor::new(job.mem, job.roots)
        .map_err(|e| e.to_string())?
        .with_mode(job.mode)
        .policy(job.policy.clone())
        .out_base(PhysAddr(job.out_base))
        .run_with_progress(|space, spaces| {
            if !tty || start.elapsed() < Duration::from_millis(300) {
                return;
            }
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(spaces as u64);
                if let Ok(style) =
                    ProgressStyle::with_template("compacting {bar:30} space {pos}/{len} {elapsed}")
                {
                    b.set_style(style);
                }
                b
            });
            b.set_position(space as u64 + 1); // the space being compacted, counted from 1
        })
        .map_err(|e| e.to_string())?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let c = &compacted;
    write_atomically(&img_path, |w| {
        w.write_all(&c.data)?;
        w.write_all(&vec![0u8; c.gap()])?;
        w.write_all(&c.tables)
    })
    .map_err(|e| format!("cannot write {}: {e}", img_path.display()))?;
    let sidecar = json!({
        "base": format!("{:#x}", c.base.0),
        "roots": c.roots.iter().map(|r| format!("{:#x}", r.0)).collect::<Vec<_>>(),
        "tables_base": format!("{:#x}", c.tables_base.0),
        "stats": stats_json(&c.stats),
    });
    write_atomically(&json_path, |w| writeln!(w, "{sidecar:#}"))
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;

    let s = &c.stats;
    let w = |e: io::Error| e.to_string();
    writeln!(
        out,
        "wrote {} and {}",
        img_path.display(),
        json_path.display()
    )
    .map_err(w)?;
    for (k, v) in stats_json(s).as_object().into_iter().flatten() {
        writeln!(out, "{k}\t{v}").map_err(w)?;
    }
    if !job.verify {
        return Ok(true);
    }
    let spinner = tty.then(|| {
        let s = ProgressBar::new_spinner().with_message("verifying");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    });
    let report = verify(job.mode, job.mem, job.roots, c, &c.roots, &job.policy);
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    if report.is_ok() {
        writeln!(
            out,
            "verify\tok ({} pages, {} aliases checked)",
            report.pages_checked, report.aliases_checked
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
