//! An independent judge of compaction fidelity for i686 snapshots: what
//! the hardware sees in each space before and after, page by page, with
//! the policy's rules written out again. It shares no code with the crate
//! (not even `verify`): plain loops over page directories and tables.

use std::collections::{BTreeMap, HashMap};

/// Physical memory: `bytes` from physical address `base`.
#[derive(Clone, Copy)]
pub struct Mem<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl Mem<'_> {
    fn slice(&self, pa: u64, len: u64) -> Option<&[u8]> {
        let off = usize::try_from(pa.checked_sub(self.base)?).ok()?;
        self.bytes
            .get(off..off.checked_add(usize::try_from(len).ok()?)?)
    }

    fn u32_at(&self, pa: u64) -> Option<u32> {
        Some(u32::from_le_bytes(self.slice(pa, 4)?.try_into().ok()?))
    }

    /// The 4 KiB frame at `pa`, if all of it is memory.
    pub fn frame(&self, pa: u64) -> Option<&[u8]> {
        self.slice(pa, 4096)
    }
}

/// One 4 KiB page as the hardware translates it (PSE on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwPage {
    pub va: u64,
    pub pa: u64,
    /// Effective RW and US: the AND of both levels' bits.
    pub rw: bool,
    pub us: bool,
    /// The leaf entry's own RW bit and bit 9.
    pub own_rw: bool,
    pub cow: bool,
    /// Mapped by a 4 MiB page.
    pub large: bool,
}

/// Every 4 KiB page of the space rooted at `root`, ascending.
pub fn hw_pages(mem: Mem<'_>, root: u64) -> Vec<HwPage> {
    let mut out = Vec::new();
    for i in 0..1024u64 {
        let Some(pde) = mem.u32_at(root + 4 * i) else {
            return out;
        };
        if pde & 1 == 0 {
            continue;
        }
        let va = i << 22;
        let (drw, dus) = (pde & 2 != 0, pde & 4 != 0);
        if pde & 0x80 != 0 {
            let pa = u64::from(pde & 0xFFC0_0000) | (u64::from((pde >> 13) & 0xFF) << 32);
            for k in 0..1024u64 {
                out.push(HwPage {
                    va: va + (k << 12),
                    pa: pa + (k << 12),
                    rw: drw,
                    us: dus,
                    own_rw: drw,
                    cow: pde & 0x200 != 0,
                    large: true,
                });
            }
            continue;
        }
        let pt = u64::from(pde & 0xFFFF_F000);
        if mem.slice(pt, 4096).is_none() {
            continue;
        }
        for k in 0..1024u64 {
            let pte = mem.u32_at(pt + 4 * k).expect("inside the table");
            if pte & 1 == 0 {
                continue;
            }
            out.push(HwPage {
                va: va + (k << 12),
                pa: u64::from(pte & 0xFFFF_F000),
                rw: drw && pte & 2 != 0,
                us: dus && pte & 4 != 0,
                own_rw: pte & 2 != 0,
                cow: pte & 0x200 != 0,
                large: false,
            });
        }
    }
    out
}

/// The policy, as parameters.
pub struct Rules {
    pub skip: Vec<(u64, u64)>,
    pub cow: bool,
    pub drop_device: bool,
    pub split_large: bool,
}

impl Rules {
    fn skipped(&self, va: u64) -> bool {
        // Covered wholly by the union of the skipped ranges.
        let mut at = va;
        let end = va + 4096;
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
        self.skip.iter().any(|&(s, e)| s < va + len && va < e)
    }
}

/// An alias of the original: `(space, va, owner_va)` of a 4 MiB region.
pub type Alias = (usize, u64, u64);

/// Checks the compacted snapshot `new` (roots `new_roots`) against `old`:
/// every kept page is there with the same contents and the expected
/// access, nothing else is; source frames and copies correspond one to
/// one; device frames stay put and outside the new memory; whole large
/// pages stay large unless split.
pub fn faithful(
    old: Mem<'_>,
    roots: &[u64],
    new: Mem<'_>,
    new_roots: &[u64],
    aliases: &[Alias],
    rules: &Rules,
) -> Result<(), String> {
    let mut forward: HashMap<u64, u64> = HashMap::new();
    let mut backward: HashMap<u64, u64> = HashMap::new();
    for (s, (&root, &new_root)) in roots.iter().zip(new_roots).enumerate() {
        let mut after: BTreeMap<u64, HwPage> = hw_pages(new, new_root)
            .into_iter()
            .map(|p| (p.va, p))
            .collect();
        for o in hw_pages(old, root) {
            let region = o.va & !0x3F_FFFF;
            // A shared region shows what the owner kept at its own VA.
            let judged_at = aliases
                .iter()
                .find(|&&(a, va, owner_va)| {
                    a == s && va == region && (va == owner_va || !rules.touches_skip(va, 4 << 20))
                })
                .map_or(o.va, |&(_, va, owner_va)| owner_va + (o.va - va));
            let device = old.frame(o.pa).is_none();
            let kept =
                !rules.skipped(o.va) && !rules.skipped(judged_at) && !(device && rules.drop_device);
            let n = after.remove(&o.va);
            let n = match (kept, n) {
                (true, Some(n)) => n,
                (false, None) => continue,
                (true, None) => return Err(format!("space {s}: {:#x} missing", o.va)),
                (false, Some(_)) => return Err(format!("space {s}: {:#x} should be gone", o.va)),
            };
            let want = if rules.cow && o.own_rw {
                (false, o.us, true)
            } else {
                (o.rw, o.us, o.cow)
            };
            if (n.rw, n.us, n.cow) != want {
                return Err(format!("space {s}: {:#x} access {n:?} for {o:?}", o.va));
            }
            let whole_large = o.large
                && !rules.split_large
                && !rules.touches_skip(region, 4 << 20)
                && old.slice(o.pa & !0x3F_FFFF, 4 << 20).is_some();
            if whole_large && !n.large {
                return Err(format!("space {s}: {:#x} is no longer a large page", o.va));
            }
            if device {
                if n.pa != o.pa || new.frame(n.pa).is_some() {
                    return Err(format!("space {s}: device page {o:?} became {n:?}"));
                }
                continue;
            }
            if *forward.entry(o.pa).or_insert(n.pa) != n.pa {
                return Err(format!("frame {:#x} has two copies", o.pa));
            }
            if *backward.entry(n.pa).or_insert(o.pa) != o.pa {
                return Err(format!("frame {:#x} holds two sources", n.pa));
            }
            if old.frame(o.pa) != new.frame(n.pa) {
                return Err(format!("space {s}: {:#x} has other contents", o.va));
            }
        }
        if let Some((va, _)) = after.first_key_value() {
            return Err(format!("space {s}: {va:#x} is mapped but was not"));
        }
    }
    Ok(())
}
