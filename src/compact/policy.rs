//! What compaction keeps, drops and changes: the [`Policy`].

use alloc::vec::Vec;
use core::ops::Range;

use crate::event::Aliasing;
use crate::mode::{COW_BIT, RW};

/// What compaction keeps, drops and changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// VA ranges (half-open, in every space) left out of the snapshot,
    /// as canonical VAs (x86-64's upper half is `0xffff_8000_0000_0000`
    /// and up, as the walk reports it); a range may span the
    /// non-canonical hole, which maps nothing anyway.
    pub skip: Vec<Range<u64>>,
    /// Turn writable pages copy-on-write: clear RW, set bit 9.
    pub cow: bool,
    /// Map large pages (4 MiB, 2 MiB, 1 GiB) as 4 KiB pages, whatever
    /// their size: a 1 GiB page becomes 262,144 4 KiB pages under 512 page
    /// tables, not 2 MiB pages. Otherwise large pages stay large, their
    /// copies aligned to their size, except where a skipped range cuts one
    /// or it lies partly inside memory: then it is split one page size at
    /// a time (a 1 GiB page into 2 MiB pages, and only the cut 2 MiB
    /// pieces into 4 KiB pages).
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

    /// Whether a leaf at `va` of `size` bytes is split (into 4 KiB pages
    /// with [`split_large`](Self::split_large), otherwise into the next
    /// smaller page size).
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
