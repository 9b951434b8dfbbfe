//! `ptwalk demo`: an embedded sample guest (three processes sharing kernel
//! page tables) walked by both consumers, printed side by side.

use std::io::{self, Write};

use ptwalk::compact::{Compactor, Policy, verify};
use ptwalk::{GrowableOwners, I686, PhysAddr, Walk, WalkEvent};

const P: u32 = 1;
const RW: u32 = 2;
const US: u32 = 4;
const A: u32 = 0x20;
const PS: u32 = 0x80;
const COW: u32 = 0x200;
const KERNEL_PDE: u32 = P | RW | A;
const USER_PDE: u32 = P | RW | US | A;

const NAMES: [&str; 3] = ["init", "shell", "editor"];

/// A tiny physical image: 4 KiB pages from 0x1000 up.
struct Sample {
    mem: Vec<u8>,
}

impl Sample {
    fn table(&mut self) -> u32 {
        let pa = self.mem.len() as u32;
        self.mem.resize(self.mem.len() + 0x1000, 0);
        pa
    }
    fn put(&mut self, table: u32, va: u32, level: u8, val: u32) {
        let idx = if level == 2 {
            va >> 22
        } else {
            (va >> 12) & 0x3FF
        };
        let o = (table + 4 * idx) as usize;
        self.mem[o..o + 4].copy_from_slice(&val.to_le_bytes());
    }
}

/// Builds the sample: returns the memory and the three roots.
fn build() -> (Vec<u8>, Vec<PhysAddr>) {
    let mut s = Sample {
        mem: vec![0; 0x1000],
    };
    let roots: Vec<u32> = (0..3).map(|_| s.table()).collect();
    // Kernel: two page tables owned by init, shared by every process at the
    // same slots, plus a 4 MiB page (a leaf in each space, never an alias).
    let (kpt0, kpt1) = (s.table(), s.table());
    for n in 0..3 {
        s.put(
            kpt0,
            0xC000_0000 + n * 0x1000,
            1,
            (0x0010_0000 + n * 0x1000) | P | RW | A,
        );
    }
    s.put(kpt0, 0xC000_3000, 1, 0xFEE0_0000 | P | RW | 0x18); // local APIC: device memory
    for n in 0..2 {
        s.put(
            kpt1,
            0xC040_0000 + n * 0x1000,
            1,
            (0x0020_0000 + n * 0x1000) | P | A,
        );
    }
    for &r in &roots {
        s.put(r, 0xC000_0000, 2, kpt0 | KERNEL_PDE);
        s.put(r, 0xC040_0000, 2, kpt1 | KERNEL_PDE);
        s.put(r, 0xC080_0000, 2, 0x0080_0000 | PS | P | RW | A);
    }
    // Each process: three private pages at 0x0804_8000; the third is
    // copy-on-write (read-only, bit 9).
    for (i, &r) in roots.iter().enumerate() {
        let pt = s.table();
        s.put(r, 0x0800_0000, 2, pt | USER_PDE);
        for n in 0..3u32 {
            let pa = 0x0100_0000 + (i as u32) * 0x10_0000 + n * 0x1000;
            let flags = if n == 2 {
                P | US | A | COW
            } else {
                P | RW | US | A
            };
            s.put(pt, 0x0804_8000 + n * 0x1000, 1, pa | flags);
        }
        if i == 1 {
            // The shell also maps its own page table at 0x4000_0000,
            // read-only: an alias within one space, at another VA.
            s.put(r, 0x4000_0000, 2, pt | P | US | A);
        }
    }
    // The frames live in memory too (all but the local APIC): a page's
    // first bytes name it, so a compacted copy can be checked.
    s.mem.resize(0x0130_0000, 0);
    for (n, page) in s.mem.chunks_mut(4096).enumerate().skip(0x100) {
        page[..8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    (s.mem, roots.iter().map(|&r| PhysAddr(r.into())).collect())
}

fn describe(e: &WalkEvent) -> String {
    match e {
        WalkEvent::Leaf(l) => {
            let size = if l.size() >= 1 << 20 {
                format!("{}M", l.size() >> 20)
            } else {
                format!("{}K", l.size() >> 10)
            };
            let cow = if l.is_cow() { ",cow" } else { "" };
            format!(
                "{:#010x} leaf  {:#010x} {size:>2} {}{cow}",
                l.va.0, l.pa.0, l.access
            )
        }
        WalkEvent::Aliasing(a) => format!(
            "{:#010x} alias of {} @{:#010x}",
            a.va.0,
            NAMES[a.owner.index()],
            a.owner_va.0
        ),
        WalkEvent::Invalid(i) => format!("{:#010x} invalid ({} MiB)", i.va.0, i.len() >> 20),
        WalkEvent::Fault(f) => format!("{:#010x} fault at {:#x}", f.va.0, f.pa.0),
        _ => String::from("?"),
    }
}

/// Prints two event streams side by side, grouped by space and 4 MiB
/// directory region.
fn side_by_side(
    out: &mut impl Write,
    left: &[WalkEvent],
    right: &[WalkEvent],
    titles: (&str, &str),
) -> io::Result<()> {
    const W: usize = 50;
    writeln!(out, "  {:<W$}  {}", titles.0, titles.1)?;
    let mut keys: Vec<(u32, u64)> = left
        .iter()
        .chain(right)
        .map(|e| (e.space().0, e.va().0 >> 22))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut space = u32::MAX;
    for (s, region) in keys {
        if s != space {
            space = s;
            writeln!(out, "{} (space {s})", NAMES[s as usize])?;
        }
        let pick = |v: &[WalkEvent]| -> Vec<String> {
            v.iter()
                .filter(|e| (e.space().0, e.va().0 >> 22) == (s, region))
                .map(describe)
                .collect()
        };
        let (l, r) = (pick(left), pick(right));
        for i in 0..l.len().max(r.len()) {
            let a = l.get(i).map_or("", String::as_str);
            let b = r.get(i).map_or("", String::as_str);
            writeln!(out, "{}", format!("  {a:<W$}  {b}").trim_end())?;
        }
    }
    Ok(())
}

fn walk<'a>(mem: &'a [u8], roots: &'a [PhysAddr]) -> Walk<'a, ptwalk::I686, [u8], GrowableOwners> {
    Walk::new(mem, roots)
        .expect("the sample's roots are distinct")
        .with_owners(GrowableOwners::new())
}

/// Runs the demo, writing to `out`.
pub fn run(out: &mut impl Write) -> io::Result<()> {
    let (mem, roots) = build();
    let refs: Vec<WalkEvent> = walk(&mem, &roots).references().collect();
    let follow: Vec<WalkEvent> = walk(&mem, &roots).follow_aliases().collect();

    writeln!(
        out,
        "ptwalk demo: three processes (init, shell, editor) in one i686 guest.\n\
         The kernel page tables at 0xc0000000 and 0xc0400000 are owned by init (the\n\
         first root) and shared by the others; 0xc0800000 is a 4 MiB page; each\n\
         process maps three private pages (the third copy-on-write), and the shell\n\
         maps its own page table a second time, read-only, at 0x40000000. The\n\
         physical memory is 19 MiB; the local APIC page (0xfee00000) lies outside it.\n\
         Root page directories: {}.\n",
        roots
            .iter()
            .map(|r| format!("{r}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    side_by_side(
        out,
        &refs,
        &follow,
        (
            "references()  (walk_va_spaces)",
            "follow_aliases()  (virt_to_phys)",
        ),
    )?;
    let count = |v: &[WalkEvent], f: fn(&WalkEvent) -> bool| v.iter().filter(|e| f(e)).count();
    writeln!(
        out,
        "\nreferences: {} leaves, {} aliases (each a reference a snapshot rebuild re-links);\n\
         follow:     {} leaves (every space reports every VA it reaches, with its own access:\n\
         the shell's mirror at 0x40000000 is read-only because its directory entry is).\n\
         The local APIC page lies outside memory: a leaf, never read, no fault.",
        count(&refs, |e| matches!(e, WalkEvent::Leaf(_))),
        count(&refs, |e| matches!(e, WalkEvent::Aliasing(_))),
        count(&follow, |e| matches!(e, WalkEvent::Leaf(_))),
    )?;

    // The edit: init unmaps the kernel table at 0xc0400000 (as a rebuilt
    // snapshot that dropped that region would). The aliases recorded above
    // now resolve to nothing: "no valid entry there" means "none here".
    let mut edited = mem.clone();
    let o = roots[0].0 as usize + (0xC040_0000usize >> 22) * 4;
    edited[o..o + 4].fill(0);
    let after: Vec<WalkEvent> = walk(&mem, &roots)
        .follow_aliases_in(&edited[..])
        .filter(|e| e.va().0 >> 22 == 0xC040_0000 >> 22)
        .collect();
    let before: Vec<WalkEvent> = follow
        .iter()
        .filter(|e| e.va().0 >> 22 == 0xC040_0000 >> 22)
        .copied()
        .collect();
    writeln!(
        out,
        "\nAfter an edit: init unmaps 0xc0400000 in a copy of memory. The walk still reads\n\
         each space's own tables from the snapshot but resolves aliases in the edited\n\
         copy: the owner has no valid entry there, so neither do the aliasing spaces.\n"
    )?;
    side_by_side(
        out,
        &before,
        &after,
        ("before the edit", "after: follow_aliases_in(edited)"),
    )?;

    // Compaction driven by the references stream keeps the sharing.
    let policy = Policy {
        cow: true,
        ..Policy::default()
    };
    let compacted = Compactor::new(&mem[..], &roots)
        .and_then(|c| c.policy(policy.clone()).run())
        .map_err(io::Error::other)?;
    let s = compacted.stats();
    let report = verify(
        I686::default(),
        &mem[..],
        &roots,
        &compacted,
        compacted.roots(),
        &policy,
    );
    writeln!(
        out,
        "\nCompaction (ptwalk compact --cow) of the snapshot: {} pages copied, {} device\n\
         page(s) kept in place, {} tables written for 3 spaces (8 before), {} aliases\n\
         re-linked to the owner's rebuilt tables: the kernel tables are still shared.\n\
         Verify: {} ({} pages compared).",
        s.pages_copied,
        s.device_pages_kept,
        s.tables_written,
        s.aliases_linked,
        if report.is_ok() { "ok" } else { "FAILED" },
        report.pages_checked,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_runs() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("alias of init"));
        assert!(text.contains("invalid (4 MiB)"));
        assert!(text.contains("ro,user,cow"));
        assert!(
            text.contains("5 aliases\nre-linked") && text.contains("Verify: ok"),
            "{text}"
        );
    }
}
