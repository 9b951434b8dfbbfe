//! Where a compacted snapshot puts things: the copied extents, the
//! padding their alignment costs, the tables, and the device memory it
//! must stay clear of.
//!
//! Placement is decided before any table is written, so the tables are
//! built once, already pointing at the final addresses, and the data can
//! be streamed from the source to the output without ever being held in
//! memory ([`Layout::chunks`]).

use alloc::vec::Vec;
use core::ops::Range;

use super::frames::SourceExtent;
use super::{CompactError, Stats};
use crate::addr::PhysAddr;
use crate::error::MemError;
use crate::mem::PhysMem;

/// One copied run of source frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Source physical address of the first byte.
    pub src: PhysAddr,
    /// Its address in the compacted snapshot.
    pub dst: PhysAddr,
    /// Bytes (a multiple of 4 KiB).
    pub len: u64,
}

/// Gaps left by alignment that later (less aligned) extents may fill;
/// beyond this many, further gaps simply stay padding.
const MAX_GAPS: usize = 1024;

/// Extents placed at offsets from a base that is a multiple of `align`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Placement {
    /// Ascending by source address.
    pub(crate) extents: Vec<Extent>,
    /// Bytes from the base to the end of the last extent (page aligned).
    pub(crate) end: u64,
    /// The largest alignment any extent needs (at least 4 KiB).
    pub(crate) align: u64,
}

impl Placement {
    /// Places `extents` (ascending by source) from `base`: most aligned
    /// first, each at the lowest address congruent to its source modulo
    /// its alignment, smaller ones filling the gaps alignment leaves.
    /// `None` if they do not fit below 2^64.
    pub(crate) fn new(sources: &[SourceExtent], base: u64) -> Option<Placement> {
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| (core::cmp::Reverse(sources[i].align), sources[i].start));
        let mut extents = Vec::with_capacity(sources.len());
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let mut cursor = base;
        let congruent =
            |at: u64, src: u64, align: u64| at.checked_add(src.wrapping_sub(at) & (align - 1));
        for i in order {
            let s = sources[i];
            let len = s.end - s.start;
            let fit = gaps.iter().position(|&(g0, g1)| {
                congruent(g0, s.start, s.align)
                    .and_then(|d| d.checked_add(len))
                    .is_some_and(|e| e <= g1)
            });
            let dst = if let Some(g) = fit {
                let (g0, g1) = gaps[g];
                let d = congruent(g0, s.start, s.align)?;
                gaps.swap_remove(g);
                for piece in [(g0, d), (d + len, g1)] {
                    if piece.1 > piece.0 && gaps.len() < MAX_GAPS {
                        gaps.push(piece);
                    }
                }
                d
            } else {
                let d = congruent(cursor, s.start, s.align)?;
                if d > cursor && gaps.len() < MAX_GAPS {
                    gaps.push((cursor, d));
                }
                cursor = d.checked_add(len)?;
                d
            };
            extents.push(Extent {
                src: PhysAddr(s.start),
                dst: PhysAddr(dst),
                len,
            });
        }
        extents.sort_unstable_by_key(|e| e.src.0);
        Some(Placement {
            extents,
            end: cursor - base,
            align: sources
                .iter()
                .map(|s| s.align)
                .max()
                .unwrap_or(4096)
                .max(4096),
        })
    }

    /// Moves every extent by `delta` bytes (a multiple of `align`, so the
    /// congruences hold).
    pub(crate) fn shift(&mut self, delta: u64) {
        for e in &mut self.extents {
            e.dst.0 += delta;
        }
    }

    /// The copy of source address `src`, if it lies in a placed extent.
    pub(crate) fn lookup(&self, src: u64) -> Option<u64> {
        let i = self.extents.partition_point(|e| e.src.0 + e.len <= src);
        self.extents
            .get(i)
            .filter(|e| e.src.0 <= src)
            .map(|e| e.dst.0 + (src - e.src.0))
    }
}

/// The lowest base (a multiple of `align`, from `from`) such that
/// `[base, base + len)` holds no address of `device` (merged, ascending).
pub(crate) fn clear_base(device: &[(u64, u64)], from: u64, len: u64, align: u64) -> Option<u64> {
    let mut base = from.checked_next_multiple_of(align)?;
    let mut i = 0;
    loop {
        let end = base.checked_add(len)?;
        while i < device.len() && device[i].1 <= base {
            i += 1;
        }
        match device.get(i) {
            Some(&(s, e)) if s < end => base = e.checked_next_multiple_of(align)?,
            _ => return Some(base),
        }
    }
}

/// A compacted snapshot's layout: everything but the copied bytes.
///
/// The snapshot is the physical range `[base, end())`: the extents' copies
/// (and zeroed padding between them), then the tables from `tables_base`.
/// Device memory the snapshot maps (frames outside the source memory) is
/// kept at its address and lies outside that range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Physical address of the first byte.
    pub base: PhysAddr,
    /// The copied extents, ascending by destination.
    pub extents: Vec<Extent>,
    /// Physical address of the first table (page aligned, after the data).
    pub tables_base: PhysAddr,
    /// The tables.
    pub tables: Vec<u8>,
    /// The new roots, in the order of the input roots.
    pub roots: Vec<PhysAddr>,
    /// Device memory mapped in place (merged ranges, ascending).
    pub device: Vec<Range<u64>>,
    /// What was done.
    pub stats: Stats,
}

/// One piece of a compacted image, in address order ([`Layout::chunks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// That many zero bytes (alignment padding).
    Zeros(u64),
    /// The source bytes `[src, src + len)`.
    Copy {
        /// Source physical address.
        src: PhysAddr,
        /// Bytes.
        len: u64,
    },
    /// These bytes (the tables).
    Bytes(&'a [u8]),
}

impl Layout {
    /// One past the last byte of the snapshot.
    #[must_use]
    pub fn end(&self) -> PhysAddr {
        PhysAddr(self.tables_base.0 + self.tables.len() as u64)
    }

    /// Size of the snapshot in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.end().0 - self.base.0
    }

    /// Whether the snapshot is empty (it never is: it holds the roots).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The image, piece by piece in address order from `base`: what a
    /// writer streams to a file (byte `i` is physical address `base + i`).
    pub fn chunks(&self) -> impl Iterator<Item = Chunk<'_>> + '_ {
        let mut at = self.base.0;
        let data = self.extents.iter().flat_map(move |e| {
            let pad = e.dst.0 - at;
            at = e.dst.0 + e.len;
            [
                (pad > 0).then_some(Chunk::Zeros(pad)),
                Some(Chunk::Copy {
                    src: e.src,
                    len: e.len,
                }),
            ]
        });
        let data_end = self.extents.last().map_or(self.base.0, |e| e.dst.0 + e.len);
        let pad = self.tables_base.0 - data_end;
        data.chain([
            (pad > 0).then_some(Chunk::Zeros(pad)),
            Some(Chunk::Bytes(&self.tables)),
        ])
        .flatten()
    }

    /// Builds the image in memory, reading the copied bytes from
    /// `contents` (the memory the compactor read them from).
    ///
    /// # Errors
    ///
    /// [`CompactError::Read`] if a copied page cannot be read, or if the
    /// snapshot does not fit in memory.
    pub fn materialize<C: PhysMem + ?Sized>(self, contents: &C) -> Result<Compacted, CompactError> {
        let len = usize::try_from(self.len()).map_err(|_| {
            CompactError::Read(MemError::OutOfBounds {
                pa: self.base,
                len: self.len(),
            })
        })?;
        let mut image = Vec::new();
        image.try_reserve_exact(len).map_err(|_| {
            CompactError::Read(MemError::OutOfBounds {
                pa: self.base,
                len: self.len(),
            })
        })?;
        for chunk in self.chunks() {
            match chunk {
                Chunk::Zeros(n) => image.resize(image.len() + n as usize, 0),
                Chunk::Copy { src, len } => copy_pages(contents, src, len, |b| {
                    image.extend_from_slice(b);
                })?,
                Chunk::Bytes(b) => image.extend_from_slice(b),
            }
        }
        Ok(Compacted {
            layout: self,
            image,
        })
    }
}

/// Hands `[src, src + len)` of `contents` to `sink` in pieces of at most
/// 1 MiB, page by page where a piece spans two regions of memory.
///
/// # Errors
///
/// [`CompactError::Read`] if a page cannot be read.
pub fn copy_pages<C: PhysMem + ?Sized>(
    contents: &C,
    src: PhysAddr,
    len: u64,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), CompactError> {
    const PIECE: u64 = 1 << 20;
    let mut off = 0;
    while off < len {
        let n = PIECE.min(len - off);
        if let Ok(b) = contents.lend(PhysAddr(src.0 + off), n as usize) {
            sink(b);
        } else {
            for page in (0..n).step_by(4096) {
                let pa = PhysAddr(src.0 + off + page);
                sink(contents.lend(pa, 4096).map_err(CompactError::Read)?);
            }
        }
        off += n;
    }
    Ok(())
}

/// A compacted snapshot held in memory: its [`Layout`] and image.
///
/// It is itself physical memory ([`PhysMem`]), so it can be walked,
/// translated and verified directly.
#[derive(Clone, Debug)]
pub struct Compacted {
    /// Where everything is.
    pub layout: Layout,
    /// The bytes of `[layout.base, layout.end())`.
    pub image: Vec<u8>,
}

impl Compacted {
    /// The new roots, in the order of the input roots.
    #[must_use]
    pub fn roots(&self) -> &[PhysAddr] {
        &self.layout.roots
    }

    /// What the compaction did.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.layout.stats
    }
}

impl PhysMem for Compacted {
    #[inline]
    fn frozen(&self) -> bool {
        true
    }
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        crate::mem::lend_from(&self.image, self.layout.base.0, pa, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(start: u64, end: u64, align: u64) -> SourceExtent {
        SourceExtent { start, end, align }
    }

    #[test]
    fn large_extents_keep_their_alignment_and_small_ones_fill_gaps() {
        // A 4 MiB page at 12 MiB, a 4 KiB page at 5 MiB, from base 0x1000.
        let p = Placement::new(
            &[
                src(0x50_0000, 0x50_1000, 0x1000),
                src(0xC0_0000, 0x100_0000, 0x40_0000),
            ],
            0x1000,
        )
        .unwrap();
        assert_eq!(p.lookup(0xC0_0000), Some(0x40_0000));
        // The small page lands in the gap before the large one.
        assert_eq!(p.lookup(0x50_0000), Some(0x1000));
        assert_eq!(p.end, 0x80_0000 - 0x1000);
        assert_eq!(p.lookup(0x60_0000), None);
        // Nothing fits above the top of the address space.
        assert!(Placement::new(&[src(0, 0x2000, 0x1000)], u64::MAX - 0xFFF).is_none());
    }

    #[test]
    fn clear_base_steps_over_device_memory() {
        let dev = [(0, 0x1000), (0x40_0000, 0x40_1000)];
        assert_eq!(clear_base(&dev, 0, 0x2000, 0x1000), Some(0x1000));
        assert_eq!(clear_base(&dev, 0, 0x40_0000, 0x1000), Some(0x40_1000));
        assert_eq!(clear_base(&dev, 0, 0x1000, 0x40_0000), Some(0x80_0000));
        assert_eq!(clear_base(&[(0, u64::MAX)], 0, 1, 0x1000), None);
    }
}
