//! Snapshot compaction that keeps a faithful guest (feature `alloc`).
//!
//! A compacted snapshot is restored and *run*, so it must be the same guest
//! in fewer bytes:
//!
//! - **Sharing survives.** [`Compactor`] rebuilds every space's tables from
//!   the references stream and re-links each [`Aliasing`] to the owner's
//!   *rebuilt* table with the same [`resolve`] the follow consumer uses: a
//!   kernel table shared by 16 spaces before is one table shared by 16
//!   spaces after. An alias whose owner kept nothing there is written
//!   invalid.
//! - **Frame identity survives.** Every source frame reached through any
//!   leaf (any page size, space or VA) is exactly one frame after, and
//!   distinct frames stay distinct: the frames are merged into extents and
//!   each extent is copied once, at an address congruent to its source
//!   modulo the largest page inside it, so large pages stay large and
//!   aligned and a 4 KiB mapping into a large page's frame points into the
//!   copied large page. The padding this costs is in the [`Stats`].
//! - **Device memory stays put.** A frame outside the source memory (a
//!   local APIC, an MMIO BAR) keeps its address, and nothing is placed on
//!   it: by default the output goes at the lowest base clear of every kept
//!   device page; an explicit base that would cover one is refused
//!   ([`CompactError::DeviceOverlap`]). A large page partly inside memory
//!   is split: its in-memory part is copied, the rest kept in place.
//! - **Memory stays bounded.** The compactor reads only tables; it returns
//!   a [`Layout`] (the tables and where each copied extent goes), and the
//!   data is streamed from the source ([`Layout::chunks`]) or gathered in
//!   memory ([`Layout::materialize`], [`Compactor::run`]).
//!
//! Every paging mode works alike ([`Compactor::new_in`]): in PAE and x86-64
//! sharing is re-linked at every level (a PDPT shared by 25 roots is one
//! PDPT shared by 25 after, a page table reached 512 times from one page
//! directory is one page table after), each re-linked or created directory
//! entry keeps the source entry's RW, US and NX (where the source has no
//! entry, e.g. above the pieces of a split page, the mode's
//! [`default_dir_flags`](crate::PagingMode::default_dir_flags), which grant
//! everything and let the leaves decide), 2 MiB and 1 GiB pages stay large
//! and aligned, and every VA (skipped ranges included) is canonical. A PAE
//! root gets a page of its own (its 32 bytes at the start), below 4 GiB.
//!
//! [`verify`] checks a result independently of all this machinery. What is
//! kept, dropped or changed is a [`Policy`].

mod build;
mod frames;
mod layout;
mod policy;
mod verify;
mod writer;

use core::fmt;

pub use layout::{Chunk, Compacted, Extent, Layout, copy_pages};
pub use policy::Policy;
pub use verify::{Mismatch, VerifyReport, verify, verify_with_progress};
pub use writer::{TableWriter, WriteError};

use crate::addr::{Level, PhysAddr, VirtAddr};
use crate::error::{MemError, WalkError};
use crate::lookup::{Found, lookup};
use crate::mem::PhysMem;
use crate::mode::{I686, PagingMode};
use crate::walk::Roots;
#[cfg(doc)]
use crate::{event::Aliasing, resolve::resolve};
use build::Source;
use layout::{Placement, clear_base};

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct 4 KiB source frames copied (each exactly once).
    pub pages_copied: u64,
    /// 4 KiB pages mapped more than once (by several spaces, VAs or page
    /// sizes) beyond the first: they share a copy.
    pub pages_deduplicated: u64,
    /// Of the frames copied, those reached through pages of two or more
    /// sizes (e.g. a 4 MiB direct-map page and a 4 KiB page).
    pub frames_multi_size: u64,
    /// 4 KiB pages left out because they lie in a skipped range.
    pub pages_skipped: u64,
    /// Mappings of frames outside memory kept at their original address.
    pub device_pages_kept: u64,
    /// Mappings of frames outside memory dropped by the policy.
    pub device_pages_dropped: u64,
    /// Large pages lying partly inside memory, split so that their
    /// in-memory part is copied and the rest kept in place (a 1 GiB page
    /// counts once, and once more for each of its 2 MiB pieces that is
    /// itself partly inside memory).
    pub large_pages_split: u64,
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
    /// Bytes of copied frames (`pages_copied` × 4 KiB).
    pub data_bytes: u64,
    /// Zero bytes that keep copies aligned to their largest page.
    pub padding_bytes: u64,
    /// Bytes of tables (`tables_written` × 4 KiB).
    pub table_bytes: u64,
    /// The whole snapshot: data + padding + tables.
    pub output_bytes: u64,
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
    /// The output, at the base asked for, would cover device memory the
    /// snapshot keeps mapped in place.
    DeviceOverlap {
        /// The first device address inside the output.
        device: PhysAddr,
        /// The output's base.
        base: PhysAddr,
        /// One past the output's end.
        end: PhysAddr,
    },
    /// No base leaves room for the output below 2^64 (at the base asked
    /// for, or clear of device memory).
    NoRoom {
        /// Bytes needed.
        len: u64,
    },
    /// A new root would lie above 4 GiB, where CR3 cannot point in a
    /// 32-bit paging mode (i686, PAE).
    RootAbove4G {
        /// The root.
        root: PhysAddr,
    },
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::Walk(e) => write!(f, "{e}"),
            CompactError::Write(e) => write!(f, "cannot write the rebuilt tables: {e}"),
            CompactError::Read(e) => write!(f, "cannot read a page: {e}"),
            CompactError::DeviceOverlap { device, base, end } => write!(
                f,
                "the output at {base}..{end} would cover device memory at {device} that the \
                 snapshot maps in place; choose another output base"
            ),
            CompactError::NoRoom { len } => write!(
                f,
                "no room for the output ({len:#x} bytes, tables included) below 2^64 at the \
                 base asked for, or clear of the device memory the snapshot maps in place"
            ),
            CompactError::RootAbove4G { root } => write!(
                f,
                "a new root would lie at {root}, above 4 GiB, where CR3 cannot point in this \
                 paging mode; choose a lower output base"
            ),
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

/// Compaction of the spaces rooted at `roots` in `mem`; see the module
/// docs.
///
/// # Examples
///
/// ```
/// use ptwalk::compact::{Compactor, Policy, verify};
/// use ptwalk::{I686, PhysAddr, Walk, WalkEvent};
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
/// assert_eq!((out.stats().pages_copied, out.stats().aliases_linked), (1, 1));
/// // Still one kernel table, shared: space 1 aliases space 0 again.
/// let refs: Vec<_> = Walk::new(&out, out.roots())?
///     .with_owners(ptwalk::GrowableOwners::new())
///     .references()
///     .collect();
/// assert!(matches!(refs[1], WalkEvent::Aliasing(a) if a.owner.0 == 0));
/// let report = verify(I686::default(), &mem[..], &roots, &out, out.roots(), &Policy::default());
/// assert!(report.is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Compactor<'a, M: ?Sized, C: ?Sized = M, P = I686> {
    mode: P,
    mem: &'a M,
    contents: &'a C,
    roots: &'a [PhysAddr],
    policy: Policy,
    base: Option<PhysAddr>,
}

impl<'a, M: PhysMem + ?Sized> Compactor<'a, M, M, I686> {
    /// Compaction of the i686 spaces rooted at `roots` in `mem`, page
    /// contents read from `mem`, output at the lowest base clear of
    /// device memory, default policy.
    ///
    /// # Errors
    ///
    /// As [`Walk::new`](crate::Walk::new).
    pub fn new(mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, CompactError> {
        Compactor::new_in(I686::default(), mem, roots)
    }
}

impl<'a, M: PhysMem + ?Sized, P: PagingMode> Compactor<'a, M, M, P> {
    /// Compaction of the spaces rooted at `roots` (as CR3 holds them) in
    /// `mem` in paging mode `mode`; otherwise as [`Compactor::new`].
    ///
    /// # Errors
    ///
    /// As [`Walk::new_in`](crate::Walk::new_in).
    pub fn new_in(mode: P, mem: &'a M, roots: &'a [PhysAddr]) -> Result<Self, CompactError> {
        Roots::Many(roots).check(mode)?;
        Ok(Compactor {
            mode,
            mem,
            contents: mem,
            roots,
            policy: Policy::default(),
            base: None,
        })
    }
}

impl<'a, M: PhysMem + ?Sized, C: PhysMem + ?Sized, P: PagingMode> Compactor<'a, M, C, P> {
    /// Another paging mode (roots as checked when built: see
    /// [`Compactor::new_in`]).
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

    /// Places the output at physical address `base` (page aligned); by
    /// default it goes at the lowest base clear of device memory.
    pub fn out_base(mut self, base: PhysAddr) -> Self {
        self.base = Some(PhysAddr(base.0 & !0xFFF));
        self
    }

    /// Runs the compaction and gathers the image in memory.
    ///
    /// # Errors
    ///
    /// As [`plan`](Self::plan) and [`Layout::materialize`].
    pub fn run(self) -> Result<Compacted, CompactError> {
        let contents = self.contents;
        self.plan()?.materialize(contents)
    }

    /// Runs the compaction without copying any data: the tables and where
    /// each copied extent goes.
    ///
    /// # Errors
    ///
    /// [`CompactError::Write`] if a rebuilt entry cannot be encoded (e.g.
    /// the output would place a table above 4 GiB on i686),
    /// [`CompactError::RootAbove4G`] if a new root would lie above 4 GiB in
    /// a 32-bit mode,
    /// [`CompactError::DeviceOverlap`] if the base asked for would cover
    /// device memory, [`CompactError::NoRoom`] if no base is clear of it.
    pub fn plan(self) -> Result<Layout, CompactError> {
        self.plan_with_progress(|_, _| {})
    }

    /// [`plan`](Self::plan), calling `progress(space, spaces)` as the
    /// build pass reaches each space.
    ///
    /// # Errors
    ///
    /// As [`plan`](Self::plan).
    pub fn plan_with_progress(
        self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Layout, CompactError> {
        let src = Source {
            mode: self.mode,
            mem: self.mem,
            contents: self.contents,
            roots: self.roots,
            policy: &self.policy,
        };
        let (mut frames, mut device) = src.survey()?;
        let survey = frames.extents();
        let device = device.merged();
        let page = 1u64 << P::PAGE_SHIFT;
        let roots_len = self.roots.len() as u64 * page;
        // The data and (generously) the tables must fit below 2^64.
        const TABLE_ROOM: u64 = 1 << 40;
        let data_bytes: u64 = survey.extents.iter().map(|e| e.end - e.start).sum();
        let no_room = CompactError::NoRoom {
            len: data_bytes.saturating_add(TABLE_ROOM),
        };
        let room = |base: u64, p: &Placement| {
            base.checked_add(p.end)
                .and_then(|e| e.checked_add(TABLE_ROOM))
                .is_some()
        };
        let (mut base, mut placement) = match self.base {
            Some(b) => {
                let p = Placement::new(&survey.extents, b.0)
                    .filter(|p| room(b.0, p))
                    .ok_or(no_room)?;
                (b.0, p)
            }
            None => {
                let mut p = Placement::new(&survey.extents, 0).ok_or(no_room)?;
                let len = p.end.saturating_add(roots_len);
                let b = clear_base(device, 0, len, p.align)
                    .filter(|&b| room(b, &p))
                    .ok_or(CompactError::NoRoom { len })?;
                p.shift(b);
                (b, p)
            }
        };
        // Tables follow the data; their number is known once built, so a
        // default base that turns out too close to device memory moves
        // (by a multiple of the alignment) and the tables are built again.
        loop {
            let tables_base = base + placement.end;
            let (writer, roots, mut stats) =
                src.build(&placement, PhysAddr(tables_base), &mut progress)?;
            let end = tables_base + writer.bytes().len() as u64;
            let overlap = device
                .iter()
                .find(|&&(s, e)| s < end && base < e)
                .map(|&(s, _)| s.max(base));
            if let Some(at) = overlap {
                if self.base.is_some() {
                    return Err(CompactError::DeviceOverlap {
                        device: PhysAddr(at),
                        base: PhysAddr(base),
                        end: PhysAddr(end),
                    });
                }
                let len = end - base;
                let moved = clear_base(device, base, len, placement.align)
                    .filter(|&b| room(b, &placement))
                    .ok_or(CompactError::NoRoom { len })?;
                placement.shift(moved - base);
                base = moved;
                continue;
            }
            // In the 32-bit modes CR3 holds 32 bits: a root above 4 GiB
            // could not be loaded.
            if self.mode.va_bits() <= 32 {
                if let Some(&root) = roots.iter().find(|r| r.0 >> 32 != 0) {
                    return Err(CompactError::RootAbove4G { root });
                }
            }
            let mut extents = placement.extents;
            extents.sort_unstable_by_key(|e| e.dst.0);
            stats.frames_multi_size = survey.multi_size_bytes >> P::PAGE_SHIFT;
            stats.data_bytes = stats.pages_copied << P::PAGE_SHIFT;
            stats.table_bytes = writer.bytes().len() as u64;
            stats.output_bytes = end - base;
            stats.padding_bytes = stats.output_bytes - stats.data_bytes - stats.table_bytes;
            return Ok(Layout {
                base: PhysAddr(base),
                extents,
                tables_base: PhysAddr(tables_base),
                tables: writer.into_bytes(),
                roots,
                device: device.iter().map(|&(s, e)| s..e).collect(),
                stats,
            });
        }
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
    match lookup(mode, mem, mode.root_table(root), va.0, level) {
        Found::Entry { raw, level: l, .. } if l == level => Some(raw),
        _ => None,
    }
}
