//! An independent judge of compaction fidelity for the 8-byte-entry modes
//! (PAE, 4-level and 5-level x86-64), written from the Intel SDM's
//! description of the formats: what the hardware sees in each space before
//! and after, page by page, with the policy's rules and the sharing rules
//! written out again. It shares no code with the crate (not even `verify`):
//! plain loops over tables, no `ptwalk` item but the plain data it is
//! handed. Modes use their defaults: EFER.NXE on, MAXPHYADDR 52.

use std::collections::HashMap;

/// The geometry of one mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geo {
    /// Table levels, the root's included (3, 4 or 5).
    pub levels: u8,
    /// PAE: a 4-entry PDPT root, 32-bit VAs, no canonical form.
    pub pae: bool,
}

pub const PAE: Geo = Geo {
    levels: 3,
    pae: true,
};
pub const X64: Geo = Geo {
    levels: 4,
    pae: false,
};
pub const LA57: Geo = Geo {
    levels: 5,
    pae: false,
};

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const PS: u64 = 0x80;
const NX: u64 = 1 << 63;
const COW: u64 = 0x200;
/// Address bits 12..=51.
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

/// `lo..=hi` set.
const fn bits(lo: u32, hi: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

impl Geo {
    pub fn entries(self, level: u8) -> u64 {
        if self.pae && level == 3 { 4 } else { 512 }
    }

    /// log2 of the bytes one entry of a table at `level` maps.
    pub fn shift(self, level: u8) -> u32 {
        3 + 9 * u32::from(level)
    }

    fn va_bits(self) -> u32 {
        if self.pae {
            32
        } else {
            3 + 9 * u32::from(self.levels) + 9
        }
    }

    /// Bit `va_bits - 1` copied upward (x86-64); PAE VAs are 32 bits.
    pub fn canonical(self, va: u64) -> u64 {
        if self.pae {
            va
        } else {
            let unused = 64 - self.va_bits();
            (((va << unused) as i64) >> unused) as u64
        }
    }

    /// The root table's address in a CR3 value.
    pub fn root(self, cr3: u64) -> u64 {
        if self.pae {
            cr3 & 0xFFFF_FFE0
        } else {
            cr3 & ADDR
        }
    }
}

/// What one entry means to the hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E {
    Absent,
    /// Present with reserved bits set: a page fault, nothing translated.
    Reserved,
    Table(u64),
    Page(u64),
}

pub fn decode(g: Geo, raw: u64, level: u8) -> E {
    if raw & P == 0 {
        return E::Absent;
    }
    let large = raw & PS != 0;
    let (reserved, page, low) = if g.pae {
        // PAE (SDM tables 4-8..4-11): PDPTE bits 1, 2, 6..=8 and 52..=63
        // (bit 5 accepted, as QEMU sets it); elsewhere 52..=62, and a 2 MiB
        // page's 13..=20.
        match level {
            3 => (RW | US | bits(6, 8) | bits(52, 63), false, 12),
            2 if large => (bits(52, 62) | bits(13, 20), true, 21),
            2 => (bits(52, 62), false, 12),
            _ => (bits(52, 62), true, 12),
        }
    } else {
        // IA-32e (SDM tables 4-14..4-20), MAXPHYADDR 52 and NXE: PS is
        // reserved in PML4Es and PML5Es; a 1 GiB page's 13..=29, a 2 MiB
        // page's 13..=20.
        match level {
            1 => (0, true, 12),
            2 if large => (bits(13, 20), true, 21),
            3 if large => (bits(13, 29), true, 30),
            2 | 3 => (0, false, 12),
            _ => (PS, false, 12),
        }
    };
    let pa = raw & ADDR & (u64::MAX << low);
    if raw & reserved != 0 {
        E::Reserved
    } else if page {
        E::Page(pa)
    } else {
        E::Table(pa)
    }
}

/// (RW, US, executable) one entry grants on its own; a PAE PDPTE has
/// none of the three bits and restricts nothing.
pub fn own(g: Geo, raw: u64, level: u8) -> (bool, bool, bool) {
    if g.pae && level == 3 {
        (true, true, true)
    } else {
        (raw & RW != 0, raw & US != 0, raw & NX == 0)
    }
}

/// Physical memory: `bytes` from physical address `base`.
#[derive(Clone, Copy)]
pub struct Mem<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl Mem<'_> {
    pub fn slice(&self, pa: u64, len: u64) -> Option<&[u8]> {
        let off = usize::try_from(pa.checked_sub(self.base)?).ok()?;
        self.bytes
            .get(off..off.checked_add(usize::try_from(len).ok()?)?)
    }

    pub fn u64_at(&self, pa: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.slice(pa, 8)?.try_into().ok()?))
    }

    /// The 4 KiB frame at `pa`, if all of it is memory.
    pub fn frame(&self, pa: u64) -> Option<&[u8]> {
        self.slice(pa, 4096)
    }
}

/// One leaf as the hardware translates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwLeaf {
    /// Canonical VA of its first byte.
    pub va: u64,
    pub pa: u64,
    /// Page size in bytes.
    pub size: u64,
    /// Effective RW, US and execute along the whole path.
    pub rw: bool,
    pub us: bool,
    pub x: bool,
    /// The leaf entry's own RW bit and bit 9.
    pub own_rw: bool,
    pub cow: bool,
}

fn table_readable(g: Geo, mem: Mem<'_>, pa: u64, level: u8) -> bool {
    mem.slice(pa, 8 * g.entries(level)).is_some()
}

/// Every leaf of the space whose CR3 is `cr3`, ascending by VA.
pub fn hw_leaves(g: Geo, mem: Mem<'_>, cr3: u64) -> Vec<HwLeaf> {
    fn rec(
        g: Geo,
        mem: Mem<'_>,
        table: u64,
        level: u8,
        va: u64,
        acc: (bool, bool, bool),
        out: &mut Vec<HwLeaf>,
    ) {
        for i in 0..g.entries(level) {
            let raw = mem.u64_at(table + 8 * i).expect("a readable table");
            let v = va + (i << g.shift(level));
            let (rw, us, x) = own(g, raw, level);
            let a = (acc.0 && rw, acc.1 && us, acc.2 && x);
            match decode(g, raw, level) {
                E::Absent | E::Reserved => {}
                E::Page(pa) => out.push(HwLeaf {
                    va: g.canonical(v),
                    pa,
                    size: 1 << g.shift(level),
                    rw: a.0,
                    us: a.1,
                    x: a.2,
                    own_rw: raw & RW != 0,
                    cow: raw & COW != 0,
                }),
                E::Table(t) if level > 1 && table_readable(g, mem, t, level - 1) => {
                    rec(g, mem, t, level - 1, v, a, out);
                }
                E::Table(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    let root = g.root(cr3);
    if table_readable(g, mem, root, g.levels) {
        rec(g, mem, root, g.levels, 0, (true, true, true), &mut out);
    }
    out
}

/// The leaf mapping `va` in the space whose CR3 is `cr3`.
pub fn translate(g: Geo, mem: Mem<'_>, cr3: u64, va: u64) -> Option<HwLeaf> {
    let mut table = g.root(cr3);
    let mut acc = (true, true, true);
    for level in (1..=g.levels).rev() {
        if !table_readable(g, mem, table, level) {
            return None;
        }
        let i = (va >> g.shift(level)) & (g.entries(level) - 1);
        let raw = mem.u64_at(table + 8 * i)?;
        let (rw, us, x) = own(g, raw, level);
        acc = (acc.0 && rw, acc.1 && us, acc.2 && x);
        match decode(g, raw, level) {
            E::Absent | E::Reserved => return None,
            E::Table(t) => table = t,
            E::Page(pa) => {
                let size = 1u64 << g.shift(level);
                return Some(HwLeaf {
                    va: va & !(size - 1),
                    pa,
                    size,
                    rw: acc.0,
                    us: acc.1,
                    x: acc.2,
                    own_rw: raw & RW != 0,
                    cow: raw & COW != 0,
                });
            }
        }
    }
    None
}

/// The raw entry at `level` for `va` under `cr3`, if every table above it
/// is a present, readable table entry.
pub fn entry_at(g: Geo, mem: Mem<'_>, cr3: u64, va: u64, level: u8) -> Option<u64> {
    let mut table = g.root(cr3);
    let mut l = g.levels;
    loop {
        if !table_readable(g, mem, table, l) {
            return None;
        }
        let i = (va >> g.shift(l)) & (g.entries(l) - 1);
        let raw = mem.u64_at(table + 8 * i)?;
        if l == level {
            return Some(raw);
        }
        match decode(g, raw, l) {
            E::Table(t) => table = t,
            _ => return None,
        }
        l -= 1;
    }
}

/// A later reach of a table (keyed by address and level) than its owner's:
/// the entry at `level` for `va` in `space` means what the owner's entry at
/// `owner_va` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alias {
    pub space: usize,
    pub va: u64,
    pub level: u8,
    pub owner: usize,
    pub owner_va: u64,
    /// The raw entry.
    pub raw: u64,
}

impl Alias {
    pub fn len(&self, g: Geo) -> u64 {
        1 << g.shift(self.level)
    }
}

/// Every alias of a walk over `roots` in order (ascending VA, depth first;
/// the first reach of a table owns it).
pub fn aliases(g: Geo, mem: Mem<'_>, roots: &[u64]) -> Vec<Alias> {
    #[allow(clippy::too_many_arguments)]
    fn rec(
        g: Geo,
        mem: Mem<'_>,
        space: usize,
        table: u64,
        level: u8,
        va: u64,
        owners: &mut HashMap<(u64, u8), (usize, u64)>,
        out: &mut Vec<Alias>,
    ) {
        for i in 0..g.entries(level) {
            let raw = mem.u64_at(table + 8 * i).expect("a readable table");
            let v = va + (i << g.shift(level));
            let E::Table(t) = decode(g, raw, level) else {
                continue;
            };
            if level == 1 || !table_readable(g, mem, t, level - 1) {
                continue;
            }
            match owners.get(&(t, level - 1)) {
                Some(&(owner, owner_va)) => out.push(Alias {
                    space,
                    va: g.canonical(v),
                    level,
                    owner,
                    owner_va,
                    raw,
                }),
                None => {
                    owners.insert((t, level - 1), (space, g.canonical(v)));
                    rec(g, mem, space, t, level - 1, v, owners, out);
                }
            }
        }
    }
    let mut owners = HashMap::new();
    let mut out = Vec::new();
    for (s, &cr3) in roots.iter().enumerate() {
        let root = g.root(cr3);
        if table_readable(g, mem, root, g.levels) {
            rec(g, mem, s, root, g.levels, 0, &mut owners, &mut out);
        }
    }
    out
}

/// The policy, as parameters (skipped ranges in canonical VAs).
pub struct Rules {
    pub skip: Vec<(u64, u64)>,
    pub cow: bool,
    pub drop_device: bool,
    pub split_large: bool,
}

impl Rules {
    /// Covered wholly by the union of the skipped ranges.
    fn skipped(&self, va: u64) -> bool {
        let mut at = va;
        let end = va.saturating_add(4096);
        loop {
            match self
                .skip
                .iter()
                .filter(|&&(s, e)| s <= at && at < e)
                .map(|&(_, e)| e)
                .max()
            {
                Some(e) if e >= end => return true,
                Some(e) => at = e,
                None => return false,
            }
        }
    }

    fn touches_skip(&self, va: u64, len: u64) -> bool {
        let end = va.saturating_add(len);
        self.skip.iter().any(|&(s, e)| s < end && va < e)
    }

    /// A shared alias stays shared unless a skipped range touches our
    /// region at another VA than the owner's.
    pub fn shared(&self, g: Geo, a: &Alias) -> bool {
        a.va == a.owner_va || !self.touches_skip(a.va, a.len(g))
    }
}

/// Checks the compacted snapshot `new` (roots `new_roots`) against `old`
/// in mode `g`: every kept page is there with the same contents, the
/// expected access (NX included) and the expected page size, nothing else
/// is; source frames and copies correspond one to one; device frames stay
/// put and outside the new memory; every alias that stays shared is one
/// table after, reached with our own entry's access.
pub fn faithful(
    g: Geo,
    old: Mem<'_>,
    roots: &[u64],
    new: Mem<'_>,
    new_roots: &[u64],
    rules: &Rules,
) -> Result<(), String> {
    let aliases = aliases(g, old, roots);
    let mut forward: HashMap<u64, u64> = HashMap::new();
    let mut backward: HashMap<u64, u64> = HashMap::new();
    // Whether the frames of a block are all in memory or all outside.
    let mut homogeneous: HashMap<(u64, u64), bool> = HashMap::new();
    let mut homog = |pa: u64, size: u64| {
        *homogeneous.entry((pa, size)).or_insert_with(|| {
            let inside = (0..size / 4096)
                .filter(|k| old.frame(pa + k * 4096).is_some())
                .count() as u64;
            inside == 0 || inside == size / 4096
        })
    };
    // The page sizes a leaf of `size` bytes may be cut into, largest first.
    let sizes = |size: u64| {
        (1..=g.levels)
            .map(|l| 1u64 << g.shift(l))
            .filter(move |&s| s <= size && s <= 1 << 30)
            .rev()
    };
    for (s, (&root, &new_root)) in roots.iter().zip(new_roots).enumerate() {
        let mut kept_pages = 0u64;
        // The last leaf found after: the pages of one large page need one
        // translation.
        let mut last: Option<HwLeaf> = None;
        for o in hw_leaves(g, old, root) {
            // The VAs that judge this leaf: ours, then, through every
            // alias that stays shared, the owner's (a shared region shows
            // what the owner kept at its own VA).
            let mut chain = vec![o.va];
            let mut at = (s, o.va);
            while let Some(a) = aliases.iter().find(|a| {
                a.space == at.0
                    && a.va <= at.1
                    && at.1 - a.va < a.len(g)
                    && rules.shared(g, a)
                    && (a.va, a.space) != (a.owner_va, a.owner)
            }) {
                at = (a.owner, a.owner_va + (at.1 - a.va));
                chain.push(at.1);
            }
            let judged = *chain.last().expect("ours at least");
            for off in (0..o.size).step_by(4096) {
                let (va, pa) = (o.va + off, o.pa + off);
                let device = old.frame(pa).is_none();
                let kept = chain.iter().all(|&c| !rules.skipped(c + off))
                    && !(device && rules.drop_device);
                let n = match last {
                    Some(l) if l.va <= va && va - l.va < l.size => Some(l),
                    _ => translate(g, new, new_root, va),
                };
                last = n;
                let n = match (kept, n) {
                    (true, Some(n)) => n,
                    (false, None) => continue,
                    (true, None) => return Err(format!("space {s}: {va:#x} missing")),
                    (false, Some(_)) => return Err(format!("space {s}: {va:#x} should be gone")),
                };
                kept_pages += 1;
                let want = if rules.cow && o.own_rw {
                    (false, o.us, o.x, true)
                } else {
                    (o.rw, o.us, o.x, o.cow)
                };
                if (n.rw, n.us, n.x, n.cow) != want {
                    return Err(format!("space {s}: {va:#x} access {n:x?} for {o:x?}"));
                }
                // Large pages stay large unless the policy splits them all
                // (then 4 KiB), or a skipped range or the end of memory
                // cuts them: then the largest piece that nothing cuts.
                let size = if rules.split_large {
                    4096
                } else {
                    sizes(o.size)
                        .find(|&z| {
                            let (jv, p) = ((judged + off) & !(z - 1), pa & !(z - 1));
                            z == 4096 || (!rules.touches_skip(jv, z) && homog(p, z))
                        })
                        .expect("4 KiB always fits")
                };
                if n.size != size {
                    return Err(format!(
                        "space {s}: {va:#x} mapped by a {:#x}-byte page, not {size:#x}",
                        n.size
                    ));
                }
                let npa = n.pa + (va - n.va);
                if device {
                    if npa != pa || new.frame(npa).is_some() {
                        return Err(format!("space {s}: device page {va:#x} became {npa:#x}"));
                    }
                    continue;
                }
                if *forward.entry(pa).or_insert(npa) != npa {
                    return Err(format!("frame {pa:#x} has two copies"));
                }
                if *backward.entry(npa).or_insert(pa) != pa {
                    return Err(format!("frame {npa:#x} holds two sources"));
                }
                if old.frame(pa) != new.frame(npa) {
                    return Err(format!("space {s}: {va:#x} has other contents"));
                }
            }
        }
        let mapped: u64 = hw_leaves(g, new, new_root)
            .iter()
            .map(|l| l.size / 4096)
            .sum();
        if mapped != kept_pages {
            return Err(format!(
                "space {s}: {mapped} pages mapped after, {kept_pages} kept"
            ));
        }
    }
    // Sharing: one table after, our own entry's access kept.
    for a in aliases.iter().filter(|a| rules.shared(g, a)) {
        let target = |cr3: u64, va: u64| {
            entry_at(g, new, cr3, va, a.level).and_then(|raw| match decode(g, raw, a.level) {
                E::Table(t) => Some((t, raw)),
                _ => None,
            })
        };
        let owners = target(new_roots[a.owner], a.owner_va);
        let ours = target(new_roots[a.space], a.va);
        match (owners, ours) {
            (Some((t, _)), Some((u, raw))) if t == u => {
                if own(g, raw, a.level) != own(g, a.raw, a.level) {
                    return Err(format!("alias {a:x?}: our entry grants {raw:#x} after"));
                }
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "alias {a:x?}: not shared after ({owners:x?}, {ours:x?})"
                ));
            }
        }
    }
    Ok(())
}
