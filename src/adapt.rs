//! Adaptors over any stream of [`WalkEvent`]s: [`WalkExt::leaves`]
//! flattens to plain mappings, [`WalkExt::coalesce`] merges contiguous
//! mappings into ranges. Both override `fold`, so internal iteration stays
//! internal all the way down.

use core::iter::FusedIterator;

use crate::addr::{PhysAddr, SpaceId, VirtAddr};
use crate::event::{Leaf, WalkEvent};
use crate::mode::{Access, FLAG_BITS, LARGE_PAT};

/// Adaptors on walk-event streams.
pub trait WalkExt: Iterator<Item = WalkEvent> + Sized {
    /// Only the leaves, as plain mappings.
    fn leaves(self) -> Leaves<Self> {
        Leaves(self)
    }

    /// The leaves merged into [`Run`]s: maximal sequences of leaves of one
    /// space, contiguous in VA and in PA, with equal flag bits and access.
    ///
    /// # Examples
    ///
    /// ```
    /// use ptwalk::{PhysAddr, Walk, WalkExt};
    ///
    /// let mut mem = vec![0u8; 0x3000];
    /// mem[0x1000..0x1004].copy_from_slice(&0x2007u32.to_le_bytes()); // PDE 0 -> PT 0x2000
    /// for i in 0..3u32 {
    ///     let pte = (0x10_0000 + i * 0x1000) | 0x7;
    ///     mem[0x2000 + 4 * i as usize..][..4].copy_from_slice(&pte.to_le_bytes());
    /// }
    /// let runs: Vec<_> = Walk::single(&mem[..], PhysAddr(0x1000)).coalesce().collect();
    /// assert_eq!(runs.len(), 1);
    /// assert_eq!((runs[0].va.0, runs[0].pa.0, runs[0].len), (0, 0x10_0000, 0x3000));
    /// ```
    fn coalesce(self) -> Coalesce<Leaves<Self>> {
        Coalesce {
            inner: self.leaves(),
            pending: None,
        }
    }

    /// The number of events of each kind, counted by internal iteration
    /// (`fold`), so a walk's tight loops stay tight.
    ///
    /// # Examples
    ///
    /// ```
    /// use ptwalk::{Counts, PhysAddr, Walk, WalkExt};
    ///
    /// let mut mem = vec![0u8; 0x3000];
    /// mem[0x1000..0x1004].copy_from_slice(&0x2007u32.to_le_bytes());
    /// mem[0x2000..0x2004].copy_from_slice(&0x5007u32.to_le_bytes());
    /// mem[0x1004..0x1008].copy_from_slice(&0x0999_9007u32.to_le_bytes()); // table outside memory
    /// let c = Walk::single(&mem[..], PhysAddr(0x1000)).counts();
    /// assert_eq!(c, Counts { leaves: 1, aliases: 0, invalid: 0, faults: 1 });
    /// ```
    fn counts(self) -> Counts {
        self.fold(Counts::default(), |mut c, e| {
            match e {
                WalkEvent::Leaf(_) => c.leaves += 1,
                WalkEvent::Aliasing(_) => c.aliases += 1,
                WalkEvent::Invalid(_) => c.invalid += 1,
                WalkEvent::Fault(_) => c.faults += 1,
            }
            c
        })
    }
}

impl<I: Iterator<Item = WalkEvent>> WalkExt for I {}

/// How many events of each kind a walk produced; see [`WalkExt::counts`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Counts {
    /// [`WalkEvent::Leaf`] events.
    pub leaves: u64,
    /// [`WalkEvent::Aliasing`] events.
    pub aliases: u64,
    /// [`WalkEvent::Invalid`] events.
    pub invalid: u64,
    /// [`WalkEvent::Fault`] events.
    pub faults: u64,
}

/// The leaves of a walk-event stream; see [`WalkExt::leaves`].
#[derive(Clone, Debug)]
#[must_use = "iterator adaptors are lazy"]
pub struct Leaves<I>(I);

impl<I: Iterator<Item = WalkEvent>> Iterator for Leaves<I> {
    type Item = Leaf;

    #[inline]
    fn next(&mut self) -> Option<Leaf> {
        loop {
            if let WalkEvent::Leaf(l) = self.0.next()? {
                return Some(l);
            }
        }
    }

    #[inline]
    fn fold<B, G: FnMut(B, Leaf) -> B>(self, init: B, mut g: G) -> B {
        self.0.fold(init, |acc, e| match e {
            WalkEvent::Leaf(l) => g(acc, l),
            _ => acc,
        })
    }
}

impl<I: FusedIterator<Item = WalkEvent>> FusedIterator for Leaves<I> {}

/// A contiguous range of mappings: see [`WalkExt::coalesce`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Run {
    /// The space.
    pub space: SpaceId,
    /// First VA.
    pub va: VirtAddr,
    /// First PA.
    pub pa: PhysAddr,
    /// Bytes.
    pub len: u64,
    /// The entries' flag bits, equal over the run: [`FLAG_BITS`], and a
    /// large page's PAT bit 12 ([`Run::flags_of`]).
    pub flags: u64,
    /// Effective access, equal over the run.
    pub access: Access,
}

impl Run {
    /// The flag bits of a leaf that a run compares: [`FLAG_BITS`], plus
    /// bit 12 of a large page's entry (its PAT bit; in a 4 KiB entry bit 12
    /// is address).
    ///
    /// ```
    /// use ptwalk::{Access, Leaf, Level, PhysAddr, Run, SpaceId, VirtAddr};
    ///
    /// let leaf = |entry: u64, size_log2: u8| Leaf {
    ///     space: SpaceId(0), va: VirtAddr(0), pa: PhysAddr(entry & !0x1FFF), entry,
    ///     level: Level(2), size_log2, access: Access::ALL,
    /// };
    /// assert_eq!(Run::flags_of(&leaf(0x20_1083, 21)), 0x1083); // 2 MiB, PAT set
    /// assert_eq!(Run::flags_of(&leaf(0x20_1003, 12)), 0x003); // 4 KiB: bit 12 is address
    /// ```
    #[must_use]
    #[inline]
    pub fn flags_of(l: &Leaf) -> u64 {
        let pat = if l.size_log2 > 12 {
            l.entry & LARGE_PAT
        } else {
            0
        };
        l.entry & FLAG_BITS | pat
    }

    fn from_leaf(l: &Leaf) -> Run {
        Run {
            space: l.space,
            va: l.va,
            pa: l.pa,
            len: l.size(),
            flags: Run::flags_of(l),
            access: l.access,
        }
    }

    /// Whether `l` continues the run.
    #[inline]
    fn continued_by(&self, l: &Leaf) -> bool {
        l.space == self.space
            && l.va.0 == self.va.0.wrapping_add(self.len)
            && l.pa.0 == self.pa.0.wrapping_add(self.len)
            && Run::flags_of(l) == self.flags
            && l.access == self.access
    }
}

/// Leaves merged into [`Run`]s; see [`WalkExt::coalesce`].
#[derive(Clone, Debug)]
#[must_use = "iterator adaptors are lazy"]
pub struct Coalesce<I> {
    inner: I,
    pending: Option<Run>,
}

impl<I: Iterator<Item = Leaf>> Iterator for Coalesce<I> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        for l in self.inner.by_ref() {
            match &mut self.pending {
                Some(run) if run.continued_by(&l) => run.len += l.size(),
                _ => {
                    if let Some(done) = self.pending.replace(Run::from_leaf(&l)) {
                        return Some(done);
                    }
                }
            }
        }
        self.pending.take()
    }

    fn fold<B, G: FnMut(B, Run) -> B>(self, init: B, mut g: G) -> B {
        let (acc, last) =
            self.inner
                .fold((init, self.pending), |(acc, pending), l| match pending {
                    Some(run) if run.continued_by(&l) => (
                        acc,
                        Some(Run {
                            len: run.len + l.size(),
                            ..run
                        }),
                    ),
                    Some(run) => (g(acc, run), Some(Run::from_leaf(&l))),
                    None => (acc, Some(Run::from_leaf(&l))),
                });
        match last {
            Some(run) => g(acc, run),
            None => acc,
        }
    }
}

impl<I: FusedIterator<Item = Leaf>> FusedIterator for Coalesce<I> {}
