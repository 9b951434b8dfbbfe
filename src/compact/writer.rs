//! The table writer: page tables built in an owned buffer placed at a
//! physical base the caller chooses. It is the write-side twin of
//! [`PhysMem`]: it reads like memory (so the walker, [`resolve`] and
//! verification run over what it wrote) and writes through the same
//! [`PagingMode`] encoding.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{Level, PhysAddr, VirtAddr};
use crate::error::MemError;
use crate::mem::PhysMem;
use crate::mode::{Entry, PagingMode, TABLE_BYTES};
#[cfg(doc)]
use crate::resolve::resolve;

/// Why the writer could not write an entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// A table the write needs is not one of the writer's tables.
    NotATable(PhysAddr),
    /// The mapping would go through (or replace) a large page or a table
    /// already there at this VA and level.
    Conflict {
        /// The VA being written.
        va: VirtAddr,
        /// The level of the entry in the way.
        level: Level,
    },
    /// The mode cannot encode this address at this level.
    Unencodable {
        /// The address.
        pa: PhysAddr,
        /// The level.
        level: Level,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WriteError::NotATable(pa) => write!(f, "{pa} is not a table of this writer"),
            WriteError::Conflict { va, level } => {
                write!(f, "an entry at level {level} is in the way of mapping {va}")
            }
            WriteError::Unencodable { pa, level } => {
                write!(f, "{pa} cannot be encoded in a level-{level} entry")
            }
        }
    }
}

impl core::error::Error for WriteError {}

/// Page tables being written: 4 KiB tables allocated upward from `base`.
///
/// # Examples
///
/// ```
/// use ptwalk::{I686, Level, PhysAddr, TableWriter, VirtAddr, virt_to_phys};
///
/// let mut w = TableWriter::new(I686::default(), PhysAddr(0x10_0000));
/// let root = w.alloc_table();
/// // Map one 4 KiB page, read-only; the directory entry gets P|RW|US.
/// w.map(root, VirtAddr(0xC000_5000), PhysAddr(0x7_7000), Level(1), 0x1, |_| 0x7)?;
/// let leaf = virt_to_phys(&w, root, 0xC000_5000, 1).next().unwrap();
/// assert_eq!((leaf.pa.0, leaf.access.writable()), (0x7_7000, false));
/// # Ok::<(), ptwalk::WriteError>(())
/// ```
#[derive(Clone)]
pub struct TableWriter<P> {
    mode: P,
    base: PhysAddr,
    bytes: Vec<u8>,
    /// The last table `map` wrote a leaf into, keyed by (root, level, VA
    /// of the region that table maps): consecutive leaves of one table
    /// skip the descent. Only `map` and `ensure_table` fill it; nothing
    /// else ever changes an existing table pointer except `link`,
    /// `invalidate`, `set_entry` and `relocate`, which clear it.
    last: Option<(PhysAddr, Level, u64, PhysAddr)>,
}

impl<P: PagingMode> fmt::Debug for TableWriter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableWriter")
            .field("mode", &self.mode)
            .field("base", &self.base)
            .field("tables", &self.tables())
            .field("last", &self.last)
            .finish()
    }
}

const TABLE: usize = TABLE_BYTES;

impl<P: PagingMode> TableWriter<P> {
    /// An empty writer whose first table will be at `base` (page aligned;
    /// the low 12 bits are dropped).
    pub fn new(mode: P, base: PhysAddr) -> Self {
        TableWriter {
            mode,
            base: PhysAddr(base.0 & !0xFFF),
            bytes: Vec::new(),
            last: None,
        }
    }

    /// The paging mode.
    pub fn mode(&self) -> P {
        self.mode
    }

    /// Physical address of the first table.
    #[must_use]
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// Number of tables allocated.
    #[must_use]
    pub fn tables(&self) -> usize {
        self.bytes.len() / TABLE
    }

    /// The tables' bytes (table `i` at `base + i * 4096`).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives the bytes back.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Allocates a zeroed table (every entry invalid) and returns its
    /// physical address.
    pub fn alloc_table(&mut self) -> PhysAddr {
        let pa = PhysAddr(self.base.0 + self.bytes.len() as u64);
        self.bytes.resize(self.bytes.len() + TABLE, 0);
        pa
    }

    fn table_mut(&mut self, table: PhysAddr) -> Result<&mut [u8], WriteError> {
        let off = table
            .0
            .checked_sub(self.base.0)
            .filter(|o| o % TABLE as u64 == 0)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o + TABLE <= self.bytes.len())
            .ok_or(WriteError::NotATable(table))?;
        Ok(&mut self.bytes[off..off + TABLE])
    }

    /// Writes entry `index` of `table`.
    ///
    /// # Errors
    ///
    /// [`WriteError::NotATable`] if `table` is not one of this writer's.
    pub fn set_entry(&mut self, table: PhysAddr, index: usize, raw: u64) -> Result<(), WriteError> {
        self.last = None;
        self.write_entry(table, index, raw)
    }

    /// `set_entry` that keeps the cache: for writes that only fill
    /// entries, never change a table pointer.
    fn write_entry(&mut self, table: PhysAddr, index: usize, raw: u64) -> Result<(), WriteError> {
        let t = self.table_mut(table)?;
        if index >= TABLE / P::ENTRY_BYTES {
            return Err(WriteError::NotATable(table));
        }
        P::store(t, index, raw);
        Ok(())
    }

    fn get_entry(&self, table: PhysAddr, index: usize) -> Result<u64, WriteError> {
        let t = self
            .lend(table, TABLE)
            .map_err(|_| WriteError::NotATable(table))?;
        Ok(P::load(t, index))
    }

    /// The table holding the entry at `level` for `va` under `root`,
    /// creating missing tables on the way with directory flags
    /// `dir_flags(level of the new entry)`.
    fn table_for(
        &mut self,
        root: PhysAddr,
        va: VirtAddr,
        level: Level,
        dir_flags: &mut impl FnMut(Level) -> u64,
    ) -> Result<PhysAddr, WriteError> {
        let region = va.0 >> (P::shift(level) + P::index_bits(level));
        if let Some((r, l, reg, t)) = self.last {
            if (r, l, reg) == (root, level, region) {
                return Ok(t);
            }
        }
        let mut table = root;
        let mut l = self.mode.root_level();
        while l > level {
            let i = P::index(va.0, l);
            table = match self.mode.decode(self.get_entry(table, i)?, l) {
                Entry::Table(t) => t,
                Entry::Page(_) | Entry::Reserved(_) => {
                    return Err(WriteError::Conflict { va, level: l });
                }
                Entry::Absent => {
                    let t = self.alloc_table();
                    let raw = self
                        .mode
                        .table_entry(t, l, dir_flags(l))
                        .ok_or(WriteError::Unencodable { pa: t, level: l })?;
                    self.write_entry(table, i, raw)?;
                    t
                }
            };
            l = Level(l.0 - 1);
        }
        self.last = Some((root, level, region, table));
        Ok(table)
    }

    /// Maps the page at `pa` at `va` from a table at `level` (1: 4 KiB; 2:
    /// 4 MiB on i686, 2 MiB in PAE and x86-64; 3: 1 GiB in x86-64), with
    /// entry flags `flags`. Missing tables on the way
    /// are created; their directory entries get `dir_flags(level)`.
    ///
    /// # Errors
    ///
    /// [`WriteError::Conflict`] if a large page or a table is in the way,
    /// [`WriteError::Unencodable`] if `pa` cannot be mapped at `level`.
    pub fn map(
        &mut self,
        root: PhysAddr,
        va: VirtAddr,
        pa: PhysAddr,
        level: Level,
        flags: u64,
        mut dir_flags: impl FnMut(Level) -> u64,
    ) -> Result<(), WriteError> {
        let raw = self
            .mode
            .page_entry(pa, level, flags)
            .ok_or(WriteError::Unencodable { pa, level })?;
        let table = self.table_for(root, va, level, &mut dir_flags)?;
        let i = P::index(va.0, level);
        if level.0 > 1
            && matches!(
                self.mode.decode(self.get_entry(table, i)?, level),
                Entry::Table(_)
            )
        {
            return Err(WriteError::Conflict { va, level });
        }
        self.write_entry(table, i, raw)
    }

    /// Makes the table at `level - 1` for `va` exist under `root` (creating
    /// it, empty, if need be) and returns it.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn ensure_table(
        &mut self,
        root: PhysAddr,
        va: VirtAddr,
        level: Level,
        mut dir_flags: impl FnMut(Level) -> u64,
    ) -> Result<PhysAddr, WriteError> {
        // The table the entry at `level` points to is the one holding the
        // entries at `level - 1`: the descent creates it if need be.
        if level.0 < 2 {
            return Err(WriteError::Conflict { va, level });
        }
        self.table_for(root, va, Level(level.0 - 1), &mut dir_flags)
    }

    /// Links the entry at `level` for `va` under `root` to `table` (an
    /// alias: the owner's rebuilt table), with *our* entry's `flags`.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn link(
        &mut self,
        root: PhysAddr,
        va: VirtAddr,
        level: Level,
        table: PhysAddr,
        flags: u64,
        mut dir_flags: impl FnMut(Level) -> u64,
    ) -> Result<(), WriteError> {
        let raw = self
            .mode
            .table_entry(table, level, flags)
            .ok_or(WriteError::Unencodable { pa: table, level })?;
        let parent = self.table_for(root, va, level, &mut dir_flags)?;
        self.set_entry(parent, P::index(va.0, level), raw)
    }

    /// Writes an explicit invalid (zero) entry at `level` for `va` under
    /// `root`, if the tables down to it exist (otherwise the VA is already
    /// unmapped and nothing is written).
    ///
    /// # Errors
    ///
    /// [`WriteError::Conflict`] if a large page is in the way.
    pub fn invalidate(
        &mut self,
        root: PhysAddr,
        va: VirtAddr,
        level: Level,
    ) -> Result<(), WriteError> {
        let mut table = root;
        let mut l = self.mode.root_level();
        while l > level {
            table = match self
                .mode
                .decode(self.get_entry(table, P::index(va.0, l))?, l)
            {
                Entry::Table(t) => t,
                Entry::Absent => return Ok(()),
                Entry::Page(_) | Entry::Reserved(_) => {
                    return Err(WriteError::Conflict { va, level: l });
                }
            };
            l = Level(l.0 - 1);
        }
        self.set_entry(table, P::index(va.0, level), 0)
    }

    /// Moves every table to `new_base`: table pointers in directory
    /// entries are rewritten; page entries are left alone.
    ///
    /// # Errors
    ///
    /// [`WriteError::Unencodable`] if a moved table cannot be encoded.
    pub fn relocate(&mut self, new_base: PhysAddr, roots: &[PhysAddr]) -> Result<(), WriteError> {
        self.last = None;
        let new_base = PhysAddr(new_base.0 & !0xFFF);
        let old = (self.base.0, self.base.0 + self.bytes.len() as u64);
        let moved = |pa: u64| PhysAddr(pa - old.0 + new_base.0);
        // Directory tables are those reached from the roots above level 1.
        let mut stack: Vec<(PhysAddr, Level)> =
            roots.iter().map(|&r| (r, self.mode.root_level())).collect();
        let mut seen = alloc::collections::BTreeSet::new();
        while let Some((table, level)) = stack.pop() {
            if level.0 < 2 || !seen.insert((table, level)) {
                continue;
            }
            for i in 0..P::entries(level) {
                let raw = self.get_entry(table, i)?;
                if let Entry::Table(t) = self.mode.decode(raw, level) {
                    if (old.0..old.1).contains(&t.0) {
                        let flags = P::flags(raw, false);
                        let fixed = self.mode.table_entry(moved(t.0), level, flags).ok_or(
                            WriteError::Unencodable {
                                pa: moved(t.0),
                                level,
                            },
                        )?;
                        self.set_entry(table, i, fixed)?;
                        stack.push((t, Level(level.0 - 1)));
                    }
                }
            }
        }
        self.base = new_base;
        Ok(())
    }
}

impl<P: PagingMode> PhysMem for TableWriter<P> {
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        crate::mem::lend_from(&self.bytes, self.base.0, pa, len)
    }
}
