//! Snapshot compaction that preserves sharing (feature `alloc`).
//!
//! [`Compactor`] walks every space with the references consumer, copies
//! each mapped page once into a dense blob (deduplicated by source
//! physical page), maps it in that space's rebuilt tables (a
//! [`TableWriter`]), and re-links each [`Aliasing`] to the owner's
//! *rebuilt* table with the same [`resolve`] the follow consumer uses: a
//! kernel table shared by 16 spaces before is one table shared by 16
//! spaces after. An alias whose owner has no valid entry in the rebuilt
//! tables is written invalid explicitly. [`verify`] checks the result.
//!
//! What is kept, dropped or changed is a [`Policy`].

mod map;
mod verify;
mod writer;

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

pub use verify::{Mismatch, VerifyReport, verify};
pub use writer::{TableWriter, WriteError};

use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::error::{MemError, WalkError};
use crate::event::{Aliasing, COW_BIT, WalkEvent};
use crate::mem::PhysMem;
use crate::mode::{I686, PagingMode};
use crate::owners::GrowableOwners;
use crate::resolve::{Lookup, Resolution, entry_at, resolve};
use crate::walk::{Roots, Walk};
use map::PageMap;

/// RW, bit 1 of every x86 entry format.
const RW: u64 = 1 << 1;

/// What compaction keeps, drops and changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// VA ranges (half-open, in every space) left out of the snapshot.
    pub skip: Vec<Range<u64>>,
    /// Turn writable pages copy-on-write: clear RW, set bit 9.
    pub cow: bool,
    /// Map large pages as 4 KiB pages (otherwise they stay large, their
    /// copies aligned to their size).
    pub split_large: bool,
    /// Drop pages whose frames lie outside memory (device memory such as a
    /// local APIC); by default they are kept at their original address.
    pub drop_device_pages: bool,
    /// Keep tables that end up with no present entry (and the sharing of
    /// such tables); by default they vanish and aliases to them are
    /// written invalid.
    pub keep_empty_tables: bool,
}

impl Policy {
    /// The upstream rebuild's policy: drop the scratch region, turn
    /// writable pages copy-on-write, keep device pages, let empty tables
    /// vanish.
    #[must_use]
    pub fn upstream(scratch: Range<u64>) -> Self {
        Policy {
            skip: alloc::vec![scratch],
            cow: true,
            ..Policy::default()
        }
    }

    /// Whether `[va, va + len)` intersects a skipped range.
    #[must_use]
    pub fn skips_any(&self, va: u64, len: u64) -> bool {
        let end = va.saturating_add(len);
        self.skip.iter().any(|r| r.start < end && va < r.end)
    }

    /// Whether `[va, va + len)` lies wholly in skipped ranges (pieces may
    /// be covered by different ranges).
    #[must_use]
    pub fn skips_all(&self, va: u64, len: u64) -> bool {
        if self.skip.is_empty() {
            return false;
        }
        let end = va.saturating_add(len);
        let mut at = va;
        while at < end {
            match self
                .skip
                .iter()
                .filter(|r| r.start <= at && at < r.end)
                .map(|r| r.end)
                .max()
            {
                Some(next) => at = next,
                None => return false,
            }
        }
        true
    }

    /// Whether an alias stays an alias. It does unless a skipped range
    /// cuts *our* region at a VA other than the owner's: linking would then
    /// map VAs this policy drops, so the compactor maps our region
    /// privately instead. (When only the owner's region is cut, the alias
    /// keeps its meaning: our region shows what the owner kept, and is
    /// invalid if the owner kept nothing there.)
    #[must_use]
    pub fn shares(&self, a: &Aliasing) -> bool {
        a.va == a.owner_va || !self.skips_any(a.va.0, a.len())
    }

    /// Whether a leaf at `va` of `size` bytes is split into 4 KiB pages.
    #[must_use]
    pub fn splits(&self, va: u64, size: u64) -> bool {
        size > 4096 && (self.split_large || self.skips_any(va, size))
    }

    /// The entry flags a kept leaf gets.
    #[must_use]
    pub fn leaf_flags(&self, flags: u64) -> u64 {
        if self.cow && flags & RW != 0 {
            (flags & !RW) | COW_BIT
        } else {
            flags
        }
    }
}

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// 4 KiB pages copied into the blob.
    pub pages_copied: u64,
    /// Mappings that reused a page already copied.
    pub pages_deduplicated: u64,
    /// 4 KiB pages left out because they lie in a skipped range.
    pub pages_skipped: u64,
    /// Mappings of frames outside memory kept at their original address.
    pub device_pages_kept: u64,
    /// Mappings of frames outside memory dropped by the policy.
    pub device_pages_dropped: u64,
    /// Page tables written (roots included).
    pub tables_written: u64,
    /// Aliases linked to the owner's rebuilt table.
    pub aliases_linked: u64,
    /// Aliases written invalid: the owner has no valid entry there.
    pub aliases_invalidated: u64,
    /// Aliases that could not be shared because a skipped range covers
    /// our region and the owner's differently: mapped privately instead.
    pub aliases_materialized: u64,
    /// Tables that could not be read (walk faults).
    pub faults: u64,
}

/// Why compaction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactError {
    /// The roots are unusable.
    Walk(WalkError),
    /// A rebuilt entry could not be written (e.g. an address the mode
    /// cannot encode).
    Write(WriteError),
    /// A page could not be read from the contents memory.
    Read(MemError),
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::Walk(e) => write!(f, "{e}"),
            CompactError::Write(e) => write!(f, "cannot write the rebuilt tables: {e}"),
            CompactError::Read(e) => write!(f, "cannot read a page: {e}"),
        }
    }
}

impl core::error::Error for CompactError {}

impl From<WalkError> for CompactError {
    fn from(e: WalkError) -> Self {
        CompactError::Walk(e)
    }
}

impl From<WriteError> for CompactError {
    fn from(e: WriteError) -> Self {
        CompactError::Write(e)
    }
}

/// A compacted snapshot: data pages from `base`, then the tables.
///
/// It is itself physical memory ([`PhysMem`]), so it can be walked,
/// translated and verified directly.
#[derive(Clone, Debug)]
pub struct Compacted {
    /// Physical address of the first data byte.
    pub base: PhysAddr,
    /// The data pages.
    pub data: Vec<u8>,
    /// Physical address of the first table (page aligned, after the data).
    pub tables_base: PhysAddr,
    /// The tables.
    pub tables: Vec<u8>,
    /// The new roots, in the order of the input roots.
    pub roots: Vec<PhysAddr>,
    /// What was done.
    pub stats: Stats,
}

impl Compacted {
    /// Bytes between the data and the tables (alignment padding).
    #[must_use]
    pub fn gap(&self) -> usize {
        (self.tables_base.0 - self.base.0) as usize - self.data.len()
    }
}

impl PhysMem for Compacted {
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        let in_tables = crate::mem::lend_from(&self.tables, self.tables_base.0, pa, len);
        if in_tables.is_ok() || pa.0 >= self.tables_base.0 {
            return in_tables;
        }
        crate::mem::lend_from(&self.data, self.base.0, pa, len)
    }
}

/// Compaction of the spaces rooted at `roots` in `mem`; see the module
/// docs.
///
/// # Examples
///
/// ```
/// use ptwalk::compact::{Compactor, Policy};
/// use ptwalk::{PhysAddr, Walk, WalkEvent};
///
/// // Two spaces sharing a kernel table at 0x3000; one data page at 0x4000.
/// let mut mem = vec![0u8; 0x5000];
/// let mut put = |pa: usize, v: u32| mem[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
/// put(0x1000 + 0x300 * 4, 0x3003);
/// put(0x2000 + 0x300 * 4, 0x3003);
/// put(0x3000, 0x4003);
/// mem[0x4000..0x4005].copy_from_slice(b"hello");
/// let roots = [PhysAddr(0x1000), PhysAddr(0x2000)];
///
/// let out = Compactor::new(&mem[..], &roots)?.policy(Policy::default()).run()?;
/// assert_eq!((out.stats.pages_copied, out.stats.aliases_linked), (1, 1));
/// // Still one kernel table, shared: space 1 aliases space 0 again.
/// let refs: Vec<_> = Walk::new(&out, &out.roots)?
///     .with_owners(ptwalk::GrowableOwners::new())
///     .references()
///     .collect();
/// assert!(matches!(refs[1], WalkEvent::Aliasing(a) if a.owner.0 == 0));
/// assert!(ptwalk::compact::verify(ptwalk::I686::default(), &mem[..], &roots, &out, &out.roots, &Policy::default()).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Compactor<'a, M: ?Sized, C: ?Sized = M, P = I686> {
    mode: P,
    mem: &'a M,
    contents: &'a C,
    roots: &'a [PhysAddr],
    policy: Policy,
    base: PhysAddr,
}

impl<'a, M: PhysMem + ?Sized> Compactor<'a, M, M, I686> {
    /// Compaction of the i686 spaces rooted at `roots` in `mem`, page
    /// contents read from `mem`, output at physical address 0, default
    /// policy.
    ///
    /// # Errors
    ///
    /// As [`Walk::new`].
    pub fn new(mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, CompactError> {
        Roots::Many(roots).check()?;
        Ok(Compactor {
            mode: I686::default(),
            mem,
            contents: mem,
            roots,
            policy: Policy::default(),
            base: PhysAddr(0),
        })
    }
}

impl<'a, M: PhysMem + ?Sized, C: PhysMem + ?Sized, P: PagingMode> Compactor<'a, M, C, P> {
    /// Another paging mode.
    pub fn with_mode<Q: PagingMode>(self, mode: Q) -> Compactor<'a, M, C, Q> {
        Compactor {
            mode,
            mem: self.mem,
            contents: self.contents,
            roots: self.roots,
            policy: self.policy,
            base: self.base,
        }
    }

    /// Reads page contents from `contents` instead of the walked memory
    /// (frames outside it count as device memory).
    pub fn contents<D: PhysMem + ?Sized>(self, contents: &'a D) -> Compactor<'a, M, D, P> {
        Compactor {
            mode: self.mode,
            mem: self.mem,
            contents,
            roots: self.roots,
            policy: self.policy,
            base: self.base,
        }
    }

    /// The policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Places the output at physical address `base` (page aligned).
    pub fn out_base(mut self, base: PhysAddr) -> Self {
        self.base = PhysAddr(base.0 & !0xFFF);
        self
    }

    /// Runs the compaction.
    ///
    /// # Errors
    ///
    /// [`CompactError::Write`] if a rebuilt entry cannot be encoded (e.g.
    /// the output would place a table above 4 GiB on i686).
    pub fn run(self) -> Result<Compacted, CompactError> {
        self.run_with_progress(|_, _| {})
    }

    /// Runs the compaction, calling `progress(space, spaces)` as each
    /// space starts.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub fn run_with_progress(
        self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Compacted, CompactError> {
        let mut b = Build {
            mode: self.mode,
            mem: self.mem,
            contents: self.contents,
            roots: self.roots,
            policy: &self.policy,
            base: self.base,
            writer: TableWriter::new(self.mode, PhysAddr(0x1000)),
            new_roots: Vec::new(),
            data: Vec::new(),
            copies: PageMap::default(),
            stats: Stats::default(),
        };
        b.new_roots = self.roots.iter().map(|_| b.writer.alloc_table()).collect();
        let mut walk = Walk::from_roots(self.mem, Roots::Many(self.roots))
            .with_mode(self.mode)
            .with_owners(GrowableOwners::new())
            .references();
        let mut aliases: Vec<Aliasing> = Vec::new();
        let mut space = usize::MAX;
        for e in walk.by_ref() {
            if e.space().index() != space {
                space = e.space().index();
                progress(space, self.roots.len());
            }
            match e {
                WalkEvent::Leaf(l) => b.place(l.space, l.va.0, l.pa.0, l.level, l.entry)?,
                WalkEvent::Aliasing(a) => aliases.push(a),
                _ => b.stats.faults += 1,
            }
        }
        if self.policy.keep_empty_tables {
            for (_, level, space, va) in walk.into_owners().iter() {
                let root = b.new_roots[space.index()];
                let (parent, va) = (Level(level.0 + 1), va);
                let mut dir = b.dir_flags(space, va);
                b.writer.ensure_table(root, va, parent, &mut dir)?;
            }
        }
        for a in &aliases {
            b.alias(a)?;
        }
        b.finish()
    }
}

/// The state of one compaction.
struct Build<'a, 'p, M: ?Sized, C: ?Sized, P> {
    mode: P,
    mem: &'a M,
    contents: &'a C,
    roots: &'a [PhysAddr],
    policy: &'p Policy,
    base: PhysAddr,
    writer: TableWriter<P>,
    new_roots: Vec<PhysAddr>,
    data: Vec<u8>,
    copies: PageMap,
    stats: Stats,
}

impl<'a, M: PhysMem + ?Sized, C: PhysMem + ?Sized, P: PagingMode> Build<'a, '_, M, C, P> {
    /// Directory flags for tables created in `space` at `va`: those of the
    /// source entry at that level (so access is kept), looked up only when
    /// a table is created.
    fn dir_flags(
        &self,
        space: SpaceId,
        va: VirtAddr,
    ) -> impl FnMut(Level) -> u64 + use<'a, M, C, P> {
        let (mode, mem, root) = (self.mode, self.mem, self.roots[space.index()]);
        move |level| {
            source_entry(mode, mem, root, va, level).map_or(0x7, |raw| P::flags(raw, false))
        }
    }

    /// Copies the page at `src` (`size` bytes) once; returns its new PA.
    fn copy(&mut self, src: u64, size: u64, bytes_len: usize) -> Result<u64, CompactError> {
        let key = src | if size > 4096 { 3 } else { 1 };
        if let Some(dst) = self.copies.get(key) {
            self.stats.pages_deduplicated += 1;
            return Ok(dst);
        }
        let mut at = self.base.0 + self.data.len() as u64;
        let pad = at.next_multiple_of(size) - at;
        self.data.resize(self.data.len() + pad as usize, 0);
        at += pad;
        let bytes = self
            .contents
            .lend(PhysAddr(src), bytes_len)
            .map_err(CompactError::Read)?;
        self.data.extend_from_slice(bytes);
        self.copies.insert(key, at);
        self.stats.pages_copied += size / 4096;
        Ok(at)
    }

    /// Places one leaf of `space` in the rebuilt snapshot.
    fn place(
        &mut self,
        space: SpaceId,
        va: u64,
        src: u64,
        level: Level,
        entry: u64,
    ) -> Result<(), CompactError> {
        let shift = P::shift(level);
        let size = 1u64 << shift;
        if self.policy.skips_all(va, size) {
            self.stats.pages_skipped += size >> P::PAGE_SHIFT;
            return Ok(());
        }
        let large = level.0 > 1;
        let flags = P::flags(entry, large);
        if self.policy.splits(va, size) {
            let small = P::small_flags(flags);
            let raw = self.mode.page_entry(PhysAddr(0), Level::PT, small).ok_or(
                WriteError::Unencodable {
                    pa: PhysAddr(0),
                    level: Level::PT,
                },
            )?;
            for off in (0..size).step_by(1 << P::PAGE_SHIFT) {
                self.place(space, va + off, src + off, Level::PT, raw)?;
            }
            return Ok(());
        }
        let dst = match self.contents.lend(PhysAddr(src), size as usize) {
            Ok(_) => self.copy(src, size, size as usize)?,
            Err(_) if self.policy.drop_device_pages => {
                self.stats.device_pages_dropped += 1;
                return Ok(());
            }
            Err(_) => {
                self.stats.device_pages_kept += 1;
                src
            }
        };
        let root = self.new_roots[space.index()];
        let flags = self.policy.leaf_flags(flags);
        let dir = self.dir_flags(space, VirtAddr(va));
        self.writer
            .map(root, VirtAddr(va), PhysAddr(dst), level, flags, dir)
            .map_err(CompactError::Write)
    }

    /// Re-links (or invalidates, or materializes) one alias.
    fn alias(&mut self, a: &Aliasing) -> Result<(), CompactError> {
        if !self.policy.shares(a) {
            // Sharing would map what the policy drops here (or drop what it
            // keeps): map this region privately, as the hardware sees it.
            self.stats.aliases_materialized += 1;
            let walk = Walk::single(self.mem, self.roots[a.space.index()])
                .with_mode(self.mode)
                .range(a.va.0, a.len());
            for e in walk {
                match e {
                    WalkEvent::Leaf(l) => self.place(a.space, l.va.0, l.pa.0, l.level, l.entry)?,
                    _ => self.stats.faults += 1,
                }
            }
            return Ok(());
        }
        let (ours, owners) = (
            self.new_roots[a.space.index()],
            self.new_roots[a.owner.index()],
        );
        match resolve(self.mode, &self.writer, owners, a.owner_va, a.level) {
            Resolution::Table(t) => {
                let dir = self.dir_flags(a.space, a.va);
                self.writer
                    .link(ours, a.va, a.level, t, P::flags(a.entry, false), dir)?;
                self.stats.aliases_linked += 1;
            }
            _ => {
                self.writer.invalidate(ours, a.va, a.level)?;
                self.stats.aliases_invalidated += 1;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Compacted, CompactError> {
        let tables_base = PhysAddr((self.base.0 + self.data.len() as u64).next_multiple_of(4096));
        let old = self.writer.base();
        self.writer.relocate(tables_base, &self.new_roots)?;
        let roots = self
            .new_roots
            .iter()
            .map(|r| PhysAddr(r.0 - old.0 + tables_base.0))
            .collect();
        self.stats.tables_written = self.writer.tables() as u64;
        Ok(Compacted {
            base: self.base,
            data: self.data,
            tables_base,
            tables: self.writer.into_bytes(),
            roots,
            stats: self.stats,
        })
    }
}

/// The raw entry at `level` for `va` under `root` in `mem`, if the tables
/// down to it are present and readable.
pub(crate) fn source_entry<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    root: PhysAddr,
    va: VirtAddr,
    level: Level,
) -> Option<u64> {
    match entry_at(mode, mem, root, va, level) {
        Lookup::Entry(raw) => Some(raw),
        _ => None,
    }
}
