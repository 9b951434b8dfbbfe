//! The reference model for every paging mode: a small, recursive,
//! allocating walker written for clarity straight from the Intel SDM
//! (vol. 3A, chapter 4: 32-bit paging, PAE paging, 4-level and 5-level
//! paging) and the walk semantics of docs/DESIGN.md. It shares no code with
//! the crate: it decodes raw bytes itself, keeps ownership in a `HashMap`,
//! resolves aliases by a fresh descent of its own, and uses the crate only
//! for the plain value types of the events it produces.
//!
//! Include it from a test file with `mod model;` (or
//! `#[path = "model/mod.rs"] mod model;`). The i686 model of
//! tests/common/mod.rs is the older special case of this one.
#![allow(dead_code)]

use std::collections::HashMap;

use ptwalk::{
    Access, Aliasing, Fault, FaultReason, Invalid, Leaf, Level, PhysAddr, SpaceId, VirtAddr,
    WalkEvent,
};

#[cfg(test)]
mod unit;

// ---------------------------------------------------------------------------
// Entry bits (SDM tables 4-4..4-6, 4-8..4-11, 4-15..4-20).

/// Present.
pub const P: u64 = 1 << 0;
/// Read/write.
pub const RW: u64 = 1 << 1;
/// User/supervisor.
pub const US: u64 = 1 << 2;
/// Accessed.
pub const A: u64 = 1 << 5;
/// Page size (a large page) in a directory entry.
pub const PS: u64 = 1 << 7;
/// Execute-disable (PAE and x86-64, meaningful with EFER.NXE).
pub const NX: u64 = 1 << 63;

// The model's own access bits; the crate's `Access` is only built from
// them at the boundary.

/// Writable: RW set at every level.
pub const W: u8 = 1;
/// User: US set at every level.
pub const U: u8 = 2;
/// Executable: no NX along the path (where EFER.NXE gives NX a meaning).
pub const X: u8 = 4;
/// Everything: the identity of the AND along a path.
pub const ALL: u8 = W | U | X;

/// A paging mode with the control-register options the hardware reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 32-bit paging; `pse` is CR4.PSE (4 MiB pages, PSE-36).
    I686 { pse: bool },
    /// PAE paging; `nxe` is EFER.NXE, `max_phys_bits` MAXPHYADDR.
    Pae { nxe: bool, max_phys_bits: u8 },
    /// 4-level paging, or 5-level with `la57` (CR4.LA57).
    X86_64 {
        la57: bool,
        nxe: bool,
        max_phys_bits: u8,
    },
}

/// What one entry means, as the model decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    Absent,
    Table(u64),
    Page(u64),
    Reserved(u64),
}

/// Bits `lo..=hi` set.
pub const fn bits(lo: u32, hi: u32) -> u64 {
    if hi < lo {
        return 0;
    }
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

impl Mode {
    /// Table levels, root included.
    pub fn levels(self) -> u8 {
        match self {
            Mode::I686 { .. } => 2,
            Mode::Pae { .. } => 3,
            Mode::X86_64 { la57: false, .. } => 4,
            Mode::X86_64 { la57: true, .. } => 5,
        }
    }

    /// Bytes per entry.
    pub fn entry_bytes(self) -> u64 {
        match self {
            Mode::I686 { .. } => 4,
            _ => 8,
        }
    }

    /// Entries in a table at `level`.
    pub fn entries(self, level: u8) -> u64 {
        match self {
            Mode::I686 { .. } => 1024,
            // The PDPT: four entries, 32 bytes.
            Mode::Pae { .. } if level == 3 => 4,
            _ => 512,
        }
    }

    /// Bytes of a table at `level`.
    pub fn table_bytes(self, level: u8) -> u64 {
        self.entries(level) * self.entry_bytes()
    }

    /// log2 of the bytes one entry of a table at `level` maps.
    pub fn shift(self, level: u8) -> u32 {
        let per_level = match self {
            Mode::I686 { .. } => 10,
            _ => 9,
        };
        12 + per_level * u32::from(level - 1)
    }

    /// Linear-address bits.
    pub fn va_bits(self) -> u32 {
        match self {
            Mode::I686 { .. } | Mode::Pae { .. } => 32,
            Mode::X86_64 { la57: false, .. } => 48,
            Mode::X86_64 { la57: true, .. } => 57,
        }
    }

    /// Whether VAs are sign-extended from bit `va_bits - 1`.
    pub fn is_canonical_mode(self) -> bool {
        matches!(self, Mode::X86_64 { .. })
    }

    /// The canonical form of `va` (x86-64: bit `va_bits - 1` copied into
    /// every bit above it).
    pub fn canonical(self, va: u64) -> u64 {
        if !self.is_canonical_mode() {
            return va;
        }
        let top = self.va_bits() - 1;
        if va & (1 << top) != 0 {
            va | bits(top, 63)
        } else {
            va & bits(0, top)
        }
    }

    /// Whether `va` is an address of this mode.
    pub fn addressable(self, va: u64) -> bool {
        if self.is_canonical_mode() {
            self.canonical(va) == va
        } else {
            va < 1 << 32
        }
    }

    /// The root table's address for a CR3 value.
    pub fn root_table(self, cr3: u64) -> u64 {
        match self {
            // CR3 bits 31:12 (PWT and PCD below).
            Mode::I686 { .. } => cr3 & !0xFFF,
            // CR3 bits 31:5: the PDPT is 32-byte aligned.
            Mode::Pae { .. } => cr3 & !0x1F,
            // CR3 bits 51:12 (PCID or PWT/PCD below, bits 63:52 above).
            Mode::X86_64 { .. } => cr3 & bits(12, 51),
        }
    }

    /// Index into a table at `level` of the entry mapping `va`.
    pub fn index(self, va: u64, level: u8) -> u64 {
        (va >> self.shift(level)) % self.entries(level)
    }

    /// What entry `raw` of a table at `level` means.
    pub fn decode(self, raw: u64, level: u8) -> Meaning {
        if raw & P == 0 {
            return Meaning::Absent;
        }
        match self {
            Mode::I686 { pse } => {
                let raw = raw & 0xFFFF_FFFF;
                if level == 2 && pse && raw & PS != 0 {
                    // Table 4-4: a 4 MiB page; bits 20:13 are PA bits 39:32
                    // (PSE-36, MAXPHYADDR 40) and bit 21 is reserved.
                    let pa = (raw & bits(22, 31)) | (((raw >> 13) & 0xFF) << 32);
                    if raw & (1 << 21) != 0 {
                        Meaning::Reserved(pa)
                    } else {
                        Meaning::Page(pa)
                    }
                } else if level == 2 {
                    // Table 4-5: the page table's address is bits 31:12
                    // (PS is ignored without PSE).
                    Meaning::Table(raw & bits(12, 31))
                } else {
                    // Table 4-6.
                    Meaning::Page(raw & bits(12, 31))
                }
            }
            Mode::Pae { nxe, max_phys_bits } => {
                let m = u32::from(max_phys_bits);
                // Bits M..=62 are reserved in PDEs and PTEs, and bit 63
                // unless EFER.NXE gives it the XD meaning (tables 4-9..4-11).
                let high = bits(m, 62) | if nxe { 0 } else { NX };
                match level {
                    3 => {
                        // Table 4-8: PDPTE bits 2:1 and 8:5 are reserved
                        // (bit 5, accessed, accepted: QEMU TCG sets it),
                        // and bits 63:M.
                        let reserved = (1 << 1) | (1 << 2) | bits(6, 8) | bits(m, 63);
                        let pa = raw & bits(12, 51);
                        if raw & reserved != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Table(pa)
                        }
                    }
                    2 if raw & PS != 0 => {
                        // Table 4-9: a 2 MiB page; bits 20:13 reserved.
                        let pa = raw & bits(21, 51);
                        if raw & (high | bits(13, 20)) != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Page(pa)
                        }
                    }
                    2 => {
                        // Table 4-10.
                        let pa = raw & bits(12, 51);
                        if raw & high != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Table(pa)
                        }
                    }
                    _ => {
                        // Table 4-11 (bit 7 is PAT).
                        let pa = raw & bits(12, 51);
                        if raw & high != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Page(pa)
                        }
                    }
                }
            }
            Mode::X86_64 {
                nxe, max_phys_bits, ..
            } => {
                let m = u32::from(max_phys_bits);
                // Bits M..=51 are reserved at every level, and bit 63
                // unless EFER.NXE (tables 4-15..4-20); bits 62:52 are
                // ignored (or protection keys).
                let high = bits(m, 51) | if nxe { 0 } else { NX };
                match level {
                    // Tables 4-15, 4-16: PML5Es and PML4Es reference
                    // tables only; their bit 7 is reserved.
                    4 | 5 => {
                        let pa = raw & bits(12, 51);
                        if raw & (high | PS) != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Table(pa)
                        }
                    }
                    // Table 4-17: a 1 GiB page; bits 29:13 reserved.
                    3 if raw & PS != 0 => {
                        let pa = raw & bits(30, 51);
                        if raw & (high | bits(13, 29)) != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Page(pa)
                        }
                    }
                    // Table 4-19: a 2 MiB page; bits 20:13 reserved.
                    2 if raw & PS != 0 => {
                        let pa = raw & bits(21, 51);
                        if raw & (high | bits(13, 20)) != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Page(pa)
                        }
                    }
                    // Tables 4-18, 4-20: a table.
                    2 | 3 => {
                        let pa = raw & bits(12, 51);
                        if raw & high != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Table(pa)
                        }
                    }
                    // Table 4-20 (bit 7 is PAT).
                    _ => {
                        let pa = raw & bits(12, 51);
                        if raw & high != 0 {
                            Meaning::Reserved(pa)
                        } else {
                            Meaning::Page(pa)
                        }
                    }
                }
            }
        }
    }

    /// The access (model bits) entry `raw` of a table at `level` grants
    /// on its own.
    pub fn access(self, raw: u64, level: u8) -> u8 {
        let rw_us =
            |raw: u64| (if raw & RW != 0 { W } else { 0 }) | (if raw & US != 0 { U } else { 0 });
        match self {
            // 32-bit paging has no execute-disable.
            Mode::I686 { .. } => rw_us(raw) | X,
            // PAE PDPTEs have no RW, US or XD (table 4-8).
            Mode::Pae { .. } if level == 3 => ALL,
            Mode::Pae { nxe, .. } | Mode::X86_64 { nxe, .. } => {
                rw_us(raw) | if nxe && raw & NX != 0 { 0 } else { X }
            }
        }
    }
}

/// The entries of the table at `pa` (a table at `level`), if it lies
/// wholly inside `mem`.
pub fn read_table(mode: Mode, mem: &[u8], pa: u64, level: u8) -> Option<Vec<u64>> {
    let start = usize::try_from(pa).ok()?;
    let len = usize::try_from(mode.table_bytes(level)).ok()?;
    let bytes = mem.get(start..start.checked_add(len)?)?;
    let width = mode.entry_bytes() as usize;
    Some(
        bytes
            .chunks(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect(),
    )
}

/// How the model treats aliases.
#[derive(Clone, Copy, Debug)]
pub enum Consumer<'m> {
    /// One `Aliasing` event per reach of an owned table, no descent.
    References,
    /// Resolve aliases in this memory and descend what they resolve to.
    FollowIn(&'m [u8]),
}

/// What the owner's entry means in the follow memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A present table entry: this table.
    Table(u64),
    /// Anything else (absent, a page, reserved, nothing on the way).
    Invalid,
    /// A table on the way down could not be read: (its level, its PA).
    Unreadable(u8, u64),
}

/// The owner's entry at `level` for `va` under the root `cr3`, looked up
/// by a fresh descent in `mem`.
pub fn resolve(mode: Mode, mem: &[u8], cr3: u64, va: u64, level: u8) -> Resolved {
    fn down(mode: Mode, mem: &[u8], table: u64, l: u8, va: u64, level: u8) -> Resolved {
        let Some(entries) = read_table(mode, mem, table, l) else {
            return Resolved::Unreadable(l, table);
        };
        let raw = entries[mode.index(va, l) as usize];
        match mode.decode(raw, l) {
            Meaning::Table(t) if l == level => Resolved::Table(t),
            Meaning::Table(t) if l > level => down(mode, mem, t, l - 1, va, level),
            _ => Resolved::Invalid,
        }
    }
    if level < 2 || level > mode.levels() {
        return Resolved::Invalid;
    }
    down(mode, mem, mode.root_table(cr3), mode.levels(), va, level)
}

/// The range `[start, end)` a walk over (`address`, `len`) covers:
/// `[address & !0xFFF, address + len)` (saturating), clipped to 4 GiB in
/// the 32-bit modes; `None` when it holds no address of the mode (empty,
/// past 4 GiB, or wholly inside the non-canonical hole).
pub fn clip(mode: Mode, address: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    let start = address & !0xFFF;
    let end = address.saturating_add(len);
    if mode.is_canonical_mode() {
        let half = 1u64 << (mode.va_bits() - 1);
        let upper = 0u64.wrapping_sub(half); // first upper-half VA
        let lower_hit = start < end.min(half);
        let upper_hit = start.max(upper) < end;
        (lower_hit || upper_hit).then_some((start, end))
    } else {
        let end = end.min(1 << 32);
        (start < end).then_some((start, end))
    }
}

/// The model: every event of a walk over `roots` (CR3 values) in `mem` (an
/// image at physical 0), in walk order, for the range (`address`, `len`).
pub fn model(
    mode: Mode,
    mem: &[u8],
    roots: &[u64],
    address: u64,
    len: u64,
    consumer: Consumer<'_>,
) -> Vec<WalkEvent> {
    let mut m = Model {
        mode,
        mem,
        roots,
        consumer,
        start: 0,
        end: 0,
        owners: HashMap::new(),
        out: Vec::new(),
    };
    let Some((start, end)) = clip(mode, address, len) else {
        return m.out;
    };
    m.start = start;
    m.end = end;
    for (s, &cr3) in roots.iter().enumerate() {
        let space = s as u32;
        let level = mode.levels();
        let root = mode.root_table(cr3);
        match read_table(mode, mem, root, level) {
            Some(entries) => m.table(space, &entries, level, 0, ALL, false),
            None => m.fault(space, 0, level, root, FaultReason::OutOfBounds),
        }
    }
    m.out
}

struct Model<'a> {
    mode: Mode,
    mem: &'a [u8],
    roots: &'a [u64],
    consumer: Consumer<'a>,
    start: u64,
    end: u64,
    /// (table PA, table level) -> (owner space, owner VA).
    owners: HashMap<(u64, u8), (u32, u64)>,
    out: Vec<WalkEvent>,
}

impl Model<'_> {
    fn intersects(&self, va: u64, size_log2: u32) -> bool {
        let (va, size) = (u128::from(va), 1u128 << size_log2);
        va < u128::from(self.end) && va + size > u128::from(self.start)
    }

    fn fault(&mut self, space: u32, va: u64, level: u8, pa: u64, reason: FaultReason) {
        self.out.push(WalkEvent::Fault(Fault {
            space: SpaceId(space),
            va: VirtAddr(va),
            level: Level(level),
            pa: PhysAddr(pa),
            reason,
        }));
    }

    /// The events of the table `entries` at `level` mapping from `base`
    /// in `space`, under a path granting `above`; `followed` when it was
    /// reached through a followed alias (read from the follow memory, no
    /// ownership recorded).
    fn table(
        &mut self,
        space: u32,
        entries: &[u64],
        level: u8,
        base: u64,
        above: u8,
        followed: bool,
    ) {
        let mode = self.mode;
        let shift = mode.shift(level);
        for (i, &raw) in entries.iter().enumerate() {
            let va = mode.canonical(base.wrapping_add((i as u64) << shift));
            if !self.intersects(va, shift) {
                continue;
            }
            let access = above & mode.access(raw, level);
            match mode.decode(raw, level) {
                Meaning::Absent => {}
                Meaning::Reserved(pa) => {
                    self.fault(space, va, level, pa, FaultReason::Reserved);
                }
                Meaning::Page(pa) => self.out.push(WalkEvent::Leaf(Leaf {
                    space: SpaceId(space),
                    va: VirtAddr(va),
                    pa: PhysAddr(pa),
                    entry: raw,
                    level: Level(level),
                    size_log2: shift as u8,
                    access: Access::from_bits(access),
                })),
                Meaning::Table(t) => self.entry(space, va, raw, level, t, access, followed),
            }
        }
    }

    /// A present table entry `raw` of a table at `level`, mapping `va`,
    /// pointing at table `t`.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        space: u32,
        va: u64,
        raw: u64,
        level: u8,
        t: u64,
        access: u8,
        followed: bool,
    ) {
        let child = level - 1;
        let mem = match (followed, self.consumer) {
            (true, Consumer::FollowIn(fm)) => fm,
            _ => self.mem,
        };
        let Some(entries) = read_table(self.mode, mem, t, child) else {
            // Never owned: every reach faults.
            self.fault(space, va, child, t, FaultReason::OutOfBounds);
            return;
        };
        if followed {
            self.table(space, &entries, child, va, access, true);
            return;
        }
        let Some(&(owner, owner_va)) = self.owners.get(&(t, child)) else {
            self.owners.insert((t, child), (space, va));
            self.table(space, &entries, child, va, access, false);
            return;
        };
        let size_log2 = self.mode.shift(level) as u8;
        match self.consumer {
            Consumer::References => self.out.push(WalkEvent::Aliasing(Aliasing {
                space: SpaceId(space),
                va: VirtAddr(va),
                owner: SpaceId(owner),
                owner_va: VirtAddr(owner_va),
                table: PhysAddr(t),
                entry: raw,
                level: Level(level),
                size_log2,
            })),
            Consumer::FollowIn(fm) => {
                let owner_root = self.roots[owner as usize];
                match resolve(self.mode, fm, owner_root, owner_va, level) {
                    Resolved::Table(r) => match read_table(self.mode, fm, r, child) {
                        Some(entries) => self.table(space, &entries, child, va, access, true),
                        None => self.fault(space, va, child, r, FaultReason::OutOfBounds),
                    },
                    Resolved::Invalid => self.out.push(WalkEvent::Invalid(Invalid {
                        space: SpaceId(space),
                        va: VirtAddr(va),
                        level: Level(level),
                        size_log2,
                    })),
                    Resolved::Unreadable(l, pa) => {
                        self.fault(space, va, l, pa, FaultReason::OutOfBounds);
                    }
                }
            }
        }
    }
}

/// A table of the model at `pa` (level `level`), for descending a resolved
/// alias by hand: its leaves (and nested table reaches, descended in
/// `mem`) mapped from `va` in `space` under `above` (model access bits),
/// as the follow consumer reports them.
#[allow(clippy::too_many_arguments)]
pub fn descend_resolved(
    mode: Mode,
    mem: &[u8],
    space: u32,
    table: u64,
    level: u8,
    va: u64,
    above: u8,
    address: u64,
    len: u64,
) -> Vec<WalkEvent> {
    let mut m = Model {
        mode,
        mem,
        roots: &[],
        consumer: Consumer::FollowIn(mem),
        start: 0,
        end: 0,
        owners: HashMap::new(),
        out: Vec::new(),
    };
    let Some((start, end)) = clip(mode, address, len) else {
        return m.out;
    };
    m.start = start;
    m.end = end;
    match read_table(mode, mem, table, level) {
        Some(entries) => m.table(space, &entries, level, va, above, true),
        None => m.fault(space, va, level, table, FaultReason::OutOfBounds),
    }
    m.out
}

/// The access (model bits) of the path from the root `cr3` down to and
/// including the entry at `level` for `va`, read in `mem`; `None` if that
/// entry cannot be reached through present table entries.
pub fn access_to(mode: Mode, mem: &[u8], cr3: u64, va: u64, level: u8) -> Option<u8> {
    fn down(
        mode: Mode,
        mem: &[u8],
        table: u64,
        l: u8,
        va: u64,
        level: u8,
        above: u8,
    ) -> Option<u8> {
        let raw = read_table(mode, mem, table, l)?[mode.index(va, l) as usize];
        let access = above & mode.access(raw, l);
        match mode.decode(raw, l) {
            Meaning::Table(_) if l == level => Some(access),
            Meaning::Table(t) if l > level => down(mode, mem, t, l - 1, va, level, access),
            _ => None,
        }
    }
    down(
        mode,
        mem,
        mode.root_table(cr3),
        mode.levels(),
        va,
        level,
        ALL,
    )
}
