//! The benchmark gate: reads `benches/budgets.txt` and the summaries that
//! `IAI_CALLGRIND_SAVE_SUMMARY=json cargo bench --bench walk` wrote, prints
//! per-unit instruction figures against their budgets, and exits non-zero
//! when a budget is exceeded or a benchmark is missing.

#[path = "gate/budget.rs"]
mod budget;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn summaries(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            summaries(&p, out);
        } else if p.file_name().is_some_and(|n| n == "summary.json") {
            out.push(p);
        }
    }
}

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let iai = target.join("iai").join("ptwalk").join("walk");
    let budgets = match std::fs::read_to_string(root.join("benches/budgets.txt"))
        .map_err(|e| e.to_string())
        .and_then(|t| budget::parse_budgets(&t))
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench gate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut files = Vec::new();
    summaries(&iai, &mut files);
    let mut measured = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f)
            .map_err(|e| e.to_string())
            .and_then(|j| budget::parse_summary(&j))
        {
            Ok(m) => measured.push(m),
            Err(e) => {
                eprintln!("bench gate: {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let report = budget::check(&budgets, &measured);
    print!("{}", report.table);
    if report.failures.is_empty() {
        println!("bench gate: every budget holds");
        ExitCode::SUCCESS
    } else {
        for f in &report.failures {
            eprintln!("bench gate: {f}");
        }
        ExitCode::FAILURE
    }
}
