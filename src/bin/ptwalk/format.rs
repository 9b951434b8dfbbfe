//! Output formats of `ptwalk walk` and `ptwalk translate`: TSV, JSON lines
//! and counts. The formats are documented in the README and kept stable.

use std::io::{self, Write};

use ptwalk::{Leaf, PhysAddr, Translation, VirtAddr, WalkEvent, WalkExt};
use serde_json::json;

/// How `ptwalk walk` prints events.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// One event per line, tab-separated.
    Tsv,
    /// One JSON object per line.
    Json,
    /// Only the number of events of each kind.
    Count,
}

/// `rw`/`ro`, `user`/`kernel`, and `cow` when marked copy-on-write.
pub fn access(l: &Leaf) -> String {
    let mut s = l.access.to_string();
    if l.is_cow() {
        s.push_str(",cow");
    }
    s
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// The fields of one event: its kind, then its columns.
fn fields(e: &WalkEvent, roots: &[PhysAddr]) -> (&'static str, Vec<(&'static str, String)>) {
    let root = |s: ptwalk::SpaceId| hex(roots[s.index()].0);
    match e {
        WalkEvent::Leaf(l) => (
            "leaf",
            vec![
                ("space", root(l.space)),
                ("va", hex(l.va.0)),
                ("pa", hex(l.pa.0)),
                ("size", hex(l.size())),
                ("entry", hex(l.entry)),
                ("access", access(l)),
            ],
        ),
        WalkEvent::Aliasing(a) => (
            "alias",
            vec![
                ("space", root(a.space)),
                ("va", hex(a.va.0)),
                ("len", hex(a.len())),
                ("level", hex(a.level.0.into())),
                ("owner", root(a.owner)),
                ("owner_va", hex(a.owner_va.0)),
                ("table_pa", hex(a.table.0)),
                ("entry", hex(a.entry)),
            ],
        ),
        WalkEvent::Invalid(i) => (
            "invalid",
            vec![
                ("space", root(i.space)),
                ("va", hex(i.va.0)),
                ("len", hex(i.len())),
                ("level", hex(i.level.0.into())),
            ],
        ),
        WalkEvent::Fault(f) => (
            "fault",
            vec![
                ("space", root(f.space)),
                ("va", hex(f.va.0)),
                ("level", hex(f.level.0.into())),
                ("pa", hex(f.pa.0)),
                ("reason", f.reason.as_str().to_string()),
            ],
        ),
        _ => ("unknown", Vec::new()),
    }
}

fn line(
    kind: &str,
    cols: &[(&str, String)],
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    match format {
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("kind".into(), json!(kind));
            for (k, v) in cols {
                obj.insert((*k).into(), json!(v));
            }
            writeln!(out, "{}", serde_json::Value::Object(obj))
        }
        _ => {
            out.write_all(kind.as_bytes())?;
            for (_, v) in cols {
                write!(out, "\t{v}")?;
            }
            out.write_all(b"\n")
        }
    }
}

/// Prints a walk's events.
pub fn events(
    walk: impl Iterator<Item = WalkEvent>,
    roots: &[PhysAddr],
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    if let Format::Count = format {
        let c = walk.counts();
        return writeln!(
            out,
            "leaf\t{}\nalias\t{}\ninvalid\t{}\nfault\t{}",
            c.leaves, c.aliases, c.invalid, c.faults
        );
    }
    for e in walk {
        let (kind, cols) = fields(&e, roots);
        line(kind, &cols, format, out)?;
    }
    Ok(())
}

/// Prints one translation: `VA PA SIZE ENTRY ACCESS`, `VA unmapped`, or
/// `VA fault LEVEL PA REASON`.
pub fn translation(va: VirtAddr, t: &Translation, out: &mut impl Write) -> io::Result<()> {
    match t {
        Translation::Mapped(l) => {
            let pa = l.translate(va).map_or(l.pa.0, |p| p.0);
            writeln!(
                out,
                "{va:#x}\t{pa:#x}\t{:#x}\t{:#x}\t{}",
                l.size(),
                l.entry,
                access(l)
            )
        }
        Translation::Unmapped => writeln!(out, "{va:#x}\tunmapped"),
        Translation::Fault(f) => writeln!(
            out,
            "{va:#x}\tfault\t{:#x}\t{:#x}\t{}",
            f.level.0, f.pa.0, f.reason
        ),
    }
}
