//! The source frames a compaction reaches: half-open physical intervals
//! recorded per page size, merged into the extents that are copied.
//!
//! Frame identity rests here. Every leaf's frame range is recorded under
//! its page size; the union of all sizes is cut into maximal extents
//! (overlapping or touching ranges merge), and each extent remembers the
//! largest page size inside it. An extent copied whole, at an address
//! congruent to its source modulo that size, keeps every page inside it
//! aligned and every source frame behind exactly one copy, whatever page
//! sizes, spaces and VAs reach it.

use alloc::vec::Vec;

/// A set of half-open `[start, end)` intervals, merged lazily so that
/// memory stays proportional to the distinct ranges, not to the number of
/// additions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spans {
    spans: Vec<(u64, u64)>,
    /// `spans[..merged]` is sorted and disjoint.
    merged: usize,
}

impl Spans {
    /// Adds `[start, end)`.
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Walk order makes consecutive additions touch: extend in place.
        if self.merged == self.spans.len() {
            if let Some(last) = self.spans.last_mut() {
                if last.1 == start {
                    last.1 = end;
                    return;
                }
            }
        }
        self.spans.push((start, end));
        if self.spans.len() > 2 * self.merged + 4096 {
            self.merge();
        }
    }

    /// Sorts and merges overlapping or touching intervals.
    pub(crate) fn merge(&mut self) {
        self.spans.sort_unstable();
        let mut out = 0;
        for i in 0..self.spans.len() {
            let (s, e) = self.spans[i];
            if out > 0 && s <= self.spans[out - 1].1 {
                let last = &mut self.spans[out - 1];
                last.1 = last.1.max(e);
            } else {
                self.spans[out] = (s, e);
                out += 1;
            }
        }
        self.spans.truncate(out);
        self.merged = out;
    }

    /// The merged intervals, ascending.
    pub(crate) fn merged(&mut self) -> &[(u64, u64)] {
        if self.merged != self.spans.len() {
            self.merge();
        }
        &self.spans
    }
}

/// A maximal run of source frames copied as one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SourceExtent {
    /// First source byte.
    pub(crate) start: u64,
    /// One past the last.
    pub(crate) end: u64,
    /// The largest page size mapping any frame inside it: the copy must
    /// start at an address congruent to `start` modulo this.
    pub(crate) align: u64,
}

/// Source frames reached through leaves, by page size.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frames {
    /// `(page size, frames reached through pages of that size)`.
    by_size: Vec<(u64, Spans)>,
}

/// What [`Frames::extents`] found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Survey {
    /// The extents to copy, ascending by source address.
    pub(crate) extents: Vec<SourceExtent>,
    /// Bytes of frames reached through pages of two or more sizes.
    pub(crate) multi_size_bytes: u64,
}

impl Frames {
    /// Records the frames of a page of `size` bytes at `start`.
    pub(crate) fn add(&mut self, start: u64, size: u64) {
        let set = match self.by_size.iter_mut().position(|(s, _)| *s == size) {
            Some(i) => &mut self.by_size[i].1,
            None => {
                self.by_size.push((size, Spans::default()));
                &mut self.by_size.last_mut().expect("just pushed").1
            }
        };
        set.add(start, start.saturating_add(size));
    }

    /// Cuts the union of every size into extents (one sweep over all
    /// interval boundaries).
    pub(crate) fn extents(&mut self) -> Survey {
        // (address, +1 opens / -1 closes, size): closes sort first at one
        // address, so touching intervals of different sizes still merge
        // (the open count never drops to zero between them).
        let mut events: Vec<(u64, i8, u64)> = Vec::new();
        for (size, spans) in &mut self.by_size {
            for &(s, e) in spans.merged() {
                events.push((s, 1, *size));
                events.push((e, -1, *size));
            }
        }
        events.sort_unstable_by_key(|&(at, delta, _)| (at, delta));
        let mut survey = Survey::default();
        // Open sizes: each per-size set is disjoint, so a size is open at
        // most once at a time.
        let mut open: Vec<u64> = Vec::new();
        let mut current: Option<SourceExtent> = None;
        let mut at_prev = 0;
        for (at, delta, size) in events {
            if open.len() >= 2 {
                survey.multi_size_bytes += at - at_prev;
            }
            at_prev = at;
            if delta > 0 {
                open.push(size);
                let ext = current.get_or_insert(SourceExtent {
                    start: at,
                    end: at,
                    align: size,
                });
                ext.align = ext.align.max(size);
            } else if let Some(i) = open.iter().position(|&s| s == size) {
                open.swap_remove(i);
                if open.is_empty() {
                    let mut ext = current.take().expect("an open extent");
                    ext.end = at;
                    // Touching the previous extent: one piece.
                    match survey.extents.last_mut() {
                        Some(prev) if prev.end == ext.start => {
                            prev.end = ext.end;
                            prev.align = prev.align.max(ext.align);
                        }
                        _ => survey.extents.push(ext),
                    }
                }
            }
        }
        survey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_overlapping_and_touching() {
        let mut s = Spans::default();
        for (a, b) in [(10, 20), (30, 40), (20, 25), (35, 50), (60, 70), (0, 5)] {
            s.add(a, b);
        }
        assert_eq!(s.merged(), &[(0, 5), (10, 25), (30, 50), (60, 70)]);
    }

    #[test]
    fn extents_take_the_largest_page_inside() {
        let mut f = Frames::default();
        f.add(0x40_0000, 0x40_0000); // a 4 MiB page
        f.add(0x40_1000, 0x1000); // a 4 KiB page inside it
        f.add(0x80_0000, 0x1000); // touching its end
        f.add(0x90_0000, 0x1000); // apart
        let s = f.extents();
        assert_eq!(
            s.extents,
            [
                SourceExtent {
                    start: 0x40_0000,
                    end: 0x80_1000,
                    align: 0x40_0000
                },
                SourceExtent {
                    start: 0x90_0000,
                    end: 0x90_1000,
                    align: 0x1000
                }
            ]
        );
        assert_eq!(s.multi_size_bytes, 0x1000);
    }
}
