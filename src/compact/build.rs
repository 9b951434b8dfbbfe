//! The compactor's two passes over the references stream.
//!
//! Both passes see the same *pieces*: every leaf of every space, cut by
//! the [`Policy`] (skipped, split, copied, kept in place as device memory,
//! dropped), then the leaves of aliases that cannot stay shared. The
//! survey pass records the source frames the pieces reach; the build pass,
//! once placement is known, writes each piece into the rebuilt tables and
//! re-links the aliases that stay shared.

use alloc::vec::Vec;

use super::frames::{Frames, Spans};
use super::layout::Placement;
use super::{CompactError, Policy, Stats, TableWriter, WriteError, source_entry};
use crate::addr::{Level, PhysAddr, SpaceId, VirtAddr};
use crate::event::{Aliasing, WalkEvent};
use crate::mem::PhysMem;
use crate::mode::PagingMode;
use crate::owners::GrowableOwners;
use crate::resolve::{Resolution, resolve};
use crate::walk::{Roots, Walk};

/// One leaf (or part of one) as the policy decides it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Piece {
    /// Left out: this many 4 KiB pages lie in skipped ranges.
    Skipped(u64),
    /// Copied: map the copy of `src` at `va`.
    Data {
        va: u64,
        src: u64,
        level: Level,
        flags: u64,
    },
    /// Device memory kept in place: map `pa` itself at `va`.
    Device {
        va: u64,
        pa: u64,
        level: Level,
        flags: u64,
    },
    /// Device memory dropped by the policy.
    Dropped,
    /// A large page lying partly inside memory, about to be split.
    Partial,
}

/// The inputs both passes share.
pub(crate) struct Source<'a, 'p, M: ?Sized, C: ?Sized, P> {
    pub(crate) mode: P,
    pub(crate) mem: &'a M,
    pub(crate) contents: &'a C,
    pub(crate) roots: &'a [PhysAddr],
    pub(crate) policy: &'p Policy,
}

/// What a pass over the pieces leaves behind.
pub(crate) struct Drive {
    /// Aliases that stay shared, in walk order.
    pub(crate) shared: Vec<Aliasing>,
    /// Aliases mapped privately instead.
    pub(crate) materialized: u64,
    /// Tables that could not be read.
    pub(crate) faults: u64,
    /// The walk's owner index (tables and their owners).
    pub(crate) owners: GrowableOwners,
}

impl<M: PhysMem + ?Sized, C: PhysMem + ?Sized, P: PagingMode> Source<'_, '_, M, C, P> {
    /// How much of the `size` bytes of frames at `src` lie in the
    /// contents memory: `(all of them, some but not all)`. Frame by frame:
    /// a page spanning two regions of memory (two dump segments that
    /// touch) is still wholly in memory.
    fn coverage(&self, src: u64, size: u64) -> (bool, bool) {
        let in_memory = |pa: u64, len: u64| {
            usize::try_from(len).is_ok_and(|len| self.contents.lend(PhysAddr(pa), len).is_ok())
        };
        if in_memory(src, size) {
            return (true, false);
        }
        let page = 1u64 << P::PAGE_SHIFT;
        if size == page {
            return (false, false);
        }
        let inside = (0..size)
            .step_by(page as usize)
            .filter(|off| in_memory(src + off, page))
            .count() as u64;
        let frames = size >> P::PAGE_SHIFT;
        (inside == frames, inside > 0 && inside < frames)
    }

    /// The pieces of one leaf at `va` mapping `src` from a table at
    /// `level` with raw entry `entry`.
    ///
    /// A large page stays one page unless the policy splits it: then
    /// [`Policy::split_large`] maps it as 4 KiB pages, while a page that a
    /// skipped range cuts, or that lies partly inside memory, is split one
    /// page size at a time (a 1 GiB page into 2 MiB pages, and only the
    /// 2 MiB pieces still cut into 4 KiB pages), so every piece that can
    /// stay large does.
    fn pieces(
        &self,
        va: u64,
        src: u64,
        level: Level,
        entry: u64,
        visit: &mut impl FnMut(Piece) -> Result<(), CompactError>,
    ) -> Result<(), CompactError> {
        let size = 1u64 << P::shift(level);
        if self.policy.skips_all(va, size) {
            return visit(Piece::Skipped(size >> P::PAGE_SHIFT));
        }
        let large = level.0 > 1;
        let flags = P::flags(entry, large);
        let (whole, partial) = self.coverage(src, size);
        // Device memory beyond what a 4 KiB entry can address (PSE-36
        // frames above 4 GiB on i686) cannot be split: unless a skipped
        // range cuts it, it stays one large page.
        let unsplittable = large
            && !whole
            && !partial
            && !self.policy.skips_any(va, size)
            && self
                .mode
                .page_entry(PhysAddr(src), Level::PT, P::small_flags(flags))
                .is_none();
        if !unsplittable && (partial || self.policy.splits(va, size)) {
            if partial {
                visit(Piece::Partial)?;
            }
            // One page size down (to 4 KiB at once when the policy splits
            // every large page, or when the mode has no page size between).
            let (below, raw) = match Level(level.0 - 1) {
                below if below.0 > 1 && !self.policy.split_large => {
                    (below, self.mode.page_entry(PhysAddr(0), below, flags))
                }
                _ => (
                    Level::PT,
                    self.mode
                        .page_entry(PhysAddr(0), Level::PT, P::small_flags(flags)),
                ),
            };
            let raw = raw.ok_or(WriteError::Unencodable {
                pa: PhysAddr(0),
                level: below,
            })?;
            for off in (0..size).step_by(1 << P::shift(below)) {
                self.pieces(va + off, src + off, below, raw, visit)?;
            }
            return Ok(());
        }
        let flags = self.policy.leaf_flags(flags);
        visit(if whole {
            Piece::Data {
                va,
                src,
                level,
                flags,
            }
        } else if self.policy.drop_device_pages {
            Piece::Dropped
        } else {
            Piece::Device {
                va,
                pa: src,
                level,
                flags,
            }
        })
    }

    /// Every piece of every space, `visit(space, piece)`: owned leaves in
    /// walk order, then the leaves of aliases that cannot stay shared
    /// (mapped privately, as the hardware sees them).
    pub(crate) fn drive(
        &self,
        mut visit: impl FnMut(SpaceId, Piece) -> Result<(), CompactError>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Drive, CompactError> {
        let mut walk = Walk::from_roots(self.mem, Roots::Many(self.roots))
            .with_mode(self.mode)
            .with_owners(GrowableOwners::new())
            .references();
        let mut drive = Drive {
            shared: Vec::new(),
            materialized: 0,
            faults: 0,
            owners: GrowableOwners::new(),
        };
        let mut private: Vec<Aliasing> = Vec::new();
        let mut space = usize::MAX;
        for e in walk.by_ref() {
            if e.space().index() != space {
                space = e.space().index();
                progress(space, self.roots.len());
            }
            match e {
                WalkEvent::Leaf(l) => {
                    self.pieces(l.va.0, l.pa.0, l.level, l.entry, &mut |p| visit(l.space, p))?;
                }
                WalkEvent::Aliasing(a) if self.policy.shares(&a) => drive.shared.push(a),
                WalkEvent::Aliasing(a) => private.push(a),
                _ => drive.faults += 1,
            }
        }
        for a in private {
            drive.materialized += 1;
            let walk = Walk::single(self.mem, self.roots[a.space.index()])
                .with_mode(self.mode)
                .range(a.va.0, a.len());
            for e in walk {
                match e {
                    WalkEvent::Leaf(l) => {
                        self.pieces(l.va.0, l.pa.0, l.level, l.entry, &mut |p| visit(a.space, p))?;
                    }
                    _ => drive.faults += 1,
                }
            }
        }
        drive.owners = walk.into_owners();
        Ok(drive)
    }

    /// The survey pass: the source frames to copy and the device memory
    /// to keep clear of.
    pub(crate) fn survey(&self) -> Result<(Frames, Spans), CompactError> {
        let mut frames = Frames::default();
        let mut device = Spans::default();
        self.drive(
            |_, piece| {
                match piece {
                    Piece::Data { src, level, .. } => frames.add(src, 1 << P::shift(level)),
                    Piece::Device { pa, level, .. } => device.add(pa, pa + (1 << P::shift(level))),
                    _ => {}
                }
                Ok(())
            },
            |_, _| {},
        )?;
        Ok((frames, device))
    }

    /// The build pass: the rebuilt tables, from `tables_base`, with data
    /// pieces mapped to their copies in `placement`.
    pub(crate) fn build(
        &self,
        placement: &Placement,
        tables_base: PhysAddr,
        progress: impl FnMut(usize, usize),
    ) -> Result<(TableWriter<P>, Vec<PhysAddr>, Stats), CompactError> {
        let mut b = Build {
            src: self,
            writer: TableWriter::new(self.mode, tables_base),
            new_roots: Vec::new(),
            stats: Stats::default(),
        };
        b.new_roots = self.roots.iter().map(|_| b.writer.alloc_table()).collect();
        let mut mapped_data_pages = 0u64;
        let drive = self.drive(
            |space, piece| {
                match piece {
                    Piece::Skipped(n) => b.stats.pages_skipped += n,
                    Piece::Dropped => b.stats.device_pages_dropped += 1,
                    Piece::Partial => b.stats.large_pages_split += 1,
                    Piece::Device {
                        va,
                        pa,
                        level,
                        flags,
                    } => {
                        b.stats.device_pages_kept += 1;
                        b.map(space, va, pa, level, flags)?;
                    }
                    Piece::Data {
                        va,
                        src,
                        level,
                        flags,
                    } => {
                        mapped_data_pages += 1 << (P::shift(level) - P::PAGE_SHIFT);
                        let dst = placement.lookup(src).ok_or(CompactError::Read(
                            crate::error::MemError::OutOfBounds {
                                pa: PhysAddr(src),
                                len: 1 << P::shift(level),
                            },
                        ))?;
                        b.map(space, va, dst, level, flags)?;
                    }
                }
                Ok(())
            },
            progress,
        )?;
        b.stats.faults = drive.faults;
        b.stats.aliases_materialized = drive.materialized;
        if self.policy.keep_empty_tables {
            for (_, level, space, va) in drive.owners.iter() {
                let root = b.new_roots[space.index()];
                let dir = b.dir_flags(space, va);
                b.writer.ensure_table(root, va, Level(level.0 + 1), dir)?;
            }
        }
        for a in &drive.shared {
            b.link(a)?;
        }
        let copied: u64 = placement.extents.iter().map(|e| e.len).sum::<u64>() >> P::PAGE_SHIFT;
        b.stats.pages_copied = copied;
        b.stats.pages_deduplicated = mapped_data_pages.saturating_sub(copied);
        b.stats.tables_written = b.writer.tables() as u64;
        Ok((b.writer, b.new_roots, b.stats))
    }
}

/// The state of one build pass.
struct Build<'s, 'a, 'p, M: ?Sized, C: ?Sized, P> {
    src: &'s Source<'a, 'p, M, C, P>,
    writer: TableWriter<P>,
    new_roots: Vec<PhysAddr>,
    stats: Stats,
}

impl<'a, M: PhysMem + ?Sized, C: PhysMem + ?Sized, P: PagingMode> Build<'_, 'a, '_, M, C, P> {
    /// Directory flags for tables created in `space` at `va`: those of the
    /// source entry at that level (so access is kept), looked up only when
    /// a table is created.
    fn dir_flags(
        &self,
        space: SpaceId,
        va: VirtAddr,
    ) -> impl FnMut(Level) -> u64 + use<'a, M, C, P> {
        let (mode, mem, root) = (self.src.mode, self.src.mem, self.src.roots[space.index()]);
        move |level| {
            source_entry(mode, mem, root, va, level)
                .map_or(mode.default_dir_flags(level), |raw| P::flags(raw, false))
        }
    }

    fn map(
        &mut self,
        space: SpaceId,
        va: u64,
        pa: u64,
        level: Level,
        flags: u64,
    ) -> Result<(), CompactError> {
        let root = self.new_roots[space.index()];
        let dir = self.dir_flags(space, VirtAddr(va));
        self.writer
            .map(root, VirtAddr(va), PhysAddr(pa), level, flags, dir)
            .map_err(CompactError::Write)
    }

    /// Re-links one shared alias to the owner's rebuilt table, or writes
    /// it invalid when the owner kept nothing there.
    fn link(&mut self, a: &Aliasing) -> Result<(), CompactError> {
        let (ours, owners) = (
            self.new_roots[a.space.index()],
            self.new_roots[a.owner.index()],
        );
        match resolve(self.src.mode, &self.writer, owners, a.owner_va, a.level) {
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
}
