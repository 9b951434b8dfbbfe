//! `ptwalk map` and `ptwalk tables`: readable page maps and the sharing
//! behind them.
//!
//! `map` prints each space's mappings as QEMU's `info mem` does, but with
//! physical addresses: maximal runs contiguous in VA and PA with equal
//! effective access, copy-on-write and global bits, page size and owner
//! (`VA_START-VA_END SIZE PA ACCESS PAGE [OWNER]`), a range reached through
//! a table another (space, VA) owns marked with that owner, then a summary
//! line per space (JSON adds its private and shared tables per level).
//! ACCESS is `u`/`-`, `r`, `w`/`-`, then `,nx` (not executable), `,cow`
//! and `,G` where set. VAs are canonical (16 hex digits in x86-64).
//! `tables` lists every table reached by more than one (space, VA), at
//! every level below the roots: its PA, level, owner, and each (space,
//! VA) aliasing it.
//!
//! Both are generic over the paging mode: the tables are found by a
//! descent through [`PagingMode::decode`], keyed by (PA, level) in walk
//! order (roots in order, then ascending VA) exactly as the walker keys
//! ownership, and the ranges come from the walk's follow consumer.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use ptwalk::mode::Entry;
use ptwalk::{
    GrowableOwners, Level, PagingMode, PhysAddr, PhysMem, SpaceId, Walk, WalkError, WalkEvent,
};
use serde_json::json;

/// How `map` and `tables` print.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MapFormat {
    /// Aligned columns (`map`) or tab-separated lines (`tables`).
    Tsv,
    /// One JSON object per space (`map`) or per table (`tables`).
    Json,
}

/// One (space, VA) that reaches a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    pub space: SpaceId,
    pub va: u64,
}

/// A non-root table and every (space, VA) reaching it, the owner first.
#[derive(Clone, Debug)]
pub struct Table {
    pub pa: PhysAddr,
    pub level: Level,
    pub reaches: Vec<Reach>,
}

/// Every readable non-root table reached from `roots`, in the order their
/// owners reach them. A table reached again is recorded, not descended
/// (as the walker does); an unreadable one is skipped (it is a fault).
pub fn tables<P: PagingMode, M: PhysMem + ?Sized>(
    mem: &M,
    mode: P,
    roots: &[PhysAddr],
) -> Vec<Table> {
    let mut index: HashMap<(u64, u8), usize> = HashMap::new();
    let mut out: Vec<Table> = Vec::new();
    for (s, root) in roots.iter().enumerate() {
        let space = SpaceId(s as u32);
        descend(
            mem,
            mode,
            mode.root_table(*root),
            mode.root_level(),
            0,
            space,
            &mut index,
            &mut out,
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn descend<P: PagingMode, M: PhysMem + ?Sized>(
    mem: &M,
    mode: P,
    table: PhysAddr,
    level: Level,
    va: u64,
    space: SpaceId,
    index: &mut HashMap<(u64, u8), usize>,
    out: &mut Vec<Table>,
) {
    let Ok(bytes) = mem.lend(table, P::table_bytes(level)) else {
        return;
    };
    let below = Level(level.0 - 1);
    for i in 0..P::entries(level) {
        let Entry::Table(t) = mode.decode(P::load(bytes, i), level) else {
            continue;
        };
        if mem.lend(t, P::table_bytes(below)).is_err() {
            continue;
        }
        let at = mode.canonical(va.wrapping_add((i as u64) << P::shift(level)));
        let reach = Reach { space, va: at };
        if let Some(&k) = index.get(&(t.0, below.0)) {
            out[k].reaches.push(reach);
            continue;
        }
        index.insert((t.0, below.0), out.len());
        out.push(Table {
            pa: t,
            level: below,
            reaches: vec![reach],
        });
        if below.0 > 1 {
            descend(mem, mode, t, below, at, space, index, out);
        }
    }
}

/// One printed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    va: u64,
    len: u64,
    pa: u64,
    user: bool,
    write: bool,
    exec: bool,
    cow: bool,
    global: bool,
    size_log2: u8,
    /// Reached through a table owned by (space, VA at our start).
    via: Option<(SpaceId, u64)>,
}

impl Range {
    /// One past the last VA (0 for a range ending at the top of the
    /// canonical space, as QEMU's `info mem` prints it).
    fn end(&self) -> u64 {
        self.va.wrapping_add(self.len)
    }

    fn continued_by(&self, r: &Range) -> bool {
        r.va == self.end()
            && r.pa == self.pa.wrapping_add(self.len)
            && (r.user, r.write, r.exec, r.cow, r.global, r.size_log2)
                == (
                    self.user,
                    self.write,
                    self.exec,
                    self.cow,
                    self.global,
                    self.size_log2,
                )
            && match (self.via, r.via) {
                (None, None) => true,
                (Some((a, va)), Some((b, vb))) => a == b && vb == va.wrapping_add(self.len),
                _ => false,
            }
    }

    fn access(&self) -> String {
        let mut s = format!(
            "{}r{}",
            if self.user { 'u' } else { '-' },
            if self.write { 'w' } else { '-' }
        );
        if !self.exec {
            s.push_str(",nx");
        }
        if self.cow {
            s.push_str(",cow");
        }
        if self.global {
            s.push_str(",G");
        }
        s
    }
}

fn page(size_log2: u8) -> String {
    match size_log2 {
        12 => "4K".into(),
        21 => "2M".into(),
        22 => "4M".into(),
        30 => "1G".into(),
        n => format!("2^{n}"),
    }
}

/// What `map` reports for one space.
#[derive(Default)]
struct Space {
    ranges: Vec<Range>,
    mapped: u64,
    faults: u64,
    aliases: u64,
    private_tables: u64,
    shared_tables: u64,
    /// Per level of the tables (1: page tables): private, shared.
    levels: BTreeMap<u8, [u64; 2]>,
}

/// An alias region of one space: our VA, length, owner and owner's VA.
type Region = (u64, u64, SpaceId, u64);

/// Prints `ptwalk map`.
///
/// # Errors
///
/// A walk that cannot be built (duplicate roots), or output that cannot
/// be written.
pub fn map<P: PagingMode, M: PhysMem + ?Sized>(
    mem: &M,
    mode: P,
    roots: &[PhysAddr],
    labels: &[String],
    format: MapFormat,
    out: &mut impl Write,
) -> Result<(), MapError> {
    let n = roots.len();
    let mut spaces: Vec<Space> = (0..n).map(|_| Space::default()).collect();
    let mut regions: Vec<Vec<Region>> = vec![Vec::new(); n];
    let refs = Walk::new_in(mode, mem, roots)?
        .with_owners(GrowableOwners::with_capacity(1024))
        .references();
    for e in refs {
        if let WalkEvent::Aliasing(a) = e {
            let s = a.space.index();
            spaces[s].aliases += 1;
            regions[s].push((a.va.0, a.len(), a.owner, a.owner_va.0));
        }
    }
    let follow = Walk::new_in(mode, mem, roots)?
        .with_owners(GrowableOwners::with_capacity(1024))
        .follow_aliases();
    for e in follow {
        match e {
            WalkEvent::Leaf(l) => {
                let s = l.space.index();
                let rs = &regions[s];
                let k = rs.partition_point(|r| r.0 <= l.va.0);
                let via = k
                    .checked_sub(1)
                    .map(|k| rs[k])
                    .filter(|r| l.va.0 - r.0 < r.1)
                    .map(|r| (r.2, r.3.wrapping_add(l.va.0 - r.0)));
                let r = Range {
                    va: l.va.0,
                    len: l.size(),
                    pa: l.pa.0,
                    user: l.access.user(),
                    write: l.access.writable(),
                    exec: l.access.executable(),
                    cow: l.is_cow(),
                    global: l.entry & (1 << 8) != 0,
                    size_log2: l.size_log2,
                    via,
                };
                let sp = &mut spaces[s];
                sp.mapped += l.size();
                match sp.ranges.last_mut() {
                    Some(last) if last.continued_by(&r) => last.len += r.len,
                    _ => sp.ranges.push(r),
                }
            }
            WalkEvent::Fault(f) => spaces[f.space.index()].faults += 1,
            _ => {}
        }
    }
    for t in tables(mem, mode, roots) {
        let mut seen: Vec<SpaceId> = Vec::new();
        for r in &t.reaches {
            if !seen.contains(&r.space) {
                seen.push(r.space);
            }
        }
        for s in seen {
            let sp = &mut spaces[s.index()];
            let shared = t.reaches.len() > 1;
            if shared {
                sp.shared_tables += 1;
            } else {
                sp.private_tables += 1;
            }
            sp.levels.entry(t.level.0).or_default()[usize::from(shared)] += 1;
        }
    }
    let hexw = |bits: u32| (bits as usize).div_ceil(4);
    let vaw = hexw(if P::CANONICAL { 64 } else { mode.va_bits() });
    for (s, sp) in spaces.iter().enumerate() {
        let root = roots[s].0;
        let label = labels.get(s).map_or("", String::as_str);
        let owner = |via: Option<(SpaceId, u64)>| {
            via.map(|(o, va)| (format!("{:#x}", roots[o.index()].0), va))
        };
        match format {
            MapFormat::Json => {
                let ranges: Vec<_> = sp
                    .ranges
                    .iter()
                    .map(|r| {
                        let mut o = json!({
                            "va": format!("{:#x}", r.va),
                            // Exact, 2^64 included (the TSV keeps QEMU's 0).
                            "end": format!("{:#x}", u128::from(r.va) + u128::from(r.len)),
                            "size": format!("{:#x}", r.len),
                            "pa": format!("{:#x}", r.pa),
                            "access": r.access(),
                            "page": page(r.size_log2),
                        });
                        if let Some((owner, va)) = owner(r.via) {
                            o["owner"] = json!(owner);
                            o["owner_va"] = json!(format!("{va:#x}"));
                        }
                        o
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({
                        "space": format!("{root:#x}"),
                        "label": label,
                        "ranges": ranges,
                        "mapped": sp.mapped,
                        "private_tables": sp.private_tables,
                        "shared_tables": sp.shared_tables,
                        "levels": sp.levels.iter().map(|(l, [p, s])| json!({
                            "level": l,
                            "private_tables": p,
                            "shared_tables": s,
                        })).collect::<Vec<_>>(),
                        "aliases": sp.aliases,
                        "faults": sp.faults,
                    })
                )?;
            }
            MapFormat::Tsv => {
                let rows: Vec<[String; 6]> = sp
                    .ranges
                    .iter()
                    .map(|r| {
                        [
                            format!("{:0vaw$x}-{:0vaw$x}", r.va, r.end()),
                            format!("{:#x}", r.len),
                            format!("{:#x}", r.pa),
                            r.access(),
                            page(r.size_log2),
                            owner(r.via)
                                .map_or(String::new(), |(o, va)| format!("via {o} at {va:0vaw$x}")),
                        ]
                    })
                    .collect();
                let heads = ["VA_START-VA_END", "SIZE", "PA", "ACCESS", "PAGE", "OWNER"];
                let mut w = heads.map(str::len);
                for row in &rows {
                    for (k, c) in row.iter().enumerate() {
                        w[k] = w[k].max(c.len());
                    }
                }
                let line = |cols: [&str; 6], out: &mut dyn Write| -> io::Result<()> {
                    let mut s = String::new();
                    for (k, c) in cols.iter().enumerate() {
                        if k == 1 {
                            s.push_str(&format!("{c:>width$}  ", width = w[k]));
                        } else {
                            s.push_str(&format!("{c:<width$}  ", width = w[k]));
                        }
                    }
                    writeln!(out, "{}", s.trim_end())
                };
                let title = if label.is_empty() {
                    format!("space {root:#x}")
                } else {
                    format!("space {root:#x} ({label})")
                };
                writeln!(out, "{title}")?;
                line(heads, out)?;
                for row in &rows {
                    line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]], out)?;
                }
                writeln!(
                    out,
                    "summary {root:#x}: mapped {:#x} bytes ({} KiB) in {} ranges, {} private and {} shared tables, {} aliases, {} faults",
                    sp.mapped,
                    sp.mapped / 1024,
                    sp.ranges.len(),
                    sp.private_tables,
                    sp.shared_tables,
                    sp.aliases,
                    sp.faults
                )?;
                if s + 1 < n {
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(())
}

/// Prints `ptwalk tables`: `TABLE_PA LEVEL OWNER OWNER_VA ALIASES`, where
/// ALIASES lists `SPACE@VA` for every later reach, space-separated.
///
/// # Errors
///
/// Output that cannot be written.
pub fn print_tables<P: PagingMode, M: PhysMem + ?Sized>(
    mem: &M,
    mode: P,
    roots: &[PhysAddr],
    format: MapFormat,
    out: &mut impl Write,
) -> io::Result<()> {
    let root = |s: SpaceId| format!("{:#x}", roots[s.index()].0);
    for t in tables(mem, mode, roots) {
        if t.reaches.len() < 2 {
            continue;
        }
        let owner = t.reaches[0];
        let aliases: Vec<(String, String)> = t.reaches[1..]
            .iter()
            .map(|r| (root(r.space), format!("{:#x}", r.va)))
            .collect();
        match format {
            MapFormat::Tsv => {
                let list: Vec<String> = aliases.iter().map(|(s, v)| format!("{s}@{v}")).collect();
                writeln!(
                    out,
                    "{:#x}\t{}\t{}\t{:#x}\t{}",
                    t.pa.0,
                    t.level.0,
                    root(owner.space),
                    owner.va,
                    list.join(" ")
                )?;
            }
            MapFormat::Json => writeln!(
                out,
                "{}",
                json!({
                    "table": format!("{:#x}", t.pa.0),
                    "level": t.level.0,
                    "owner": root(owner.space),
                    "owner_va": format!("{:#x}", owner.va),
                    "aliases": aliases.iter().map(|(s, v)| json!({"space": s, "va": v})).collect::<Vec<_>>(),
                })
            )?,
        }
    }
    Ok(())
}

/// Why `map` failed.
#[derive(Debug)]
pub enum MapError {
    Walk(WalkError),
    Io(io::Error),
}

impl From<WalkError> for MapError {
    fn from(e: WalkError) -> Self {
        MapError::Walk(e)
    }
}

impl From<io::Error> for MapError {
    fn from(e: io::Error) -> Self {
        MapError::Io(e)
    }
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::Walk(e) => e.fmt(f),
            MapError::Io(e) => e.fmt(f),
        }
    }
}
