//! Guest-physical memory as the walker sees it: the [`PhysMem`] trait and
//! its backends.
//!
//! The trait is consumer-side only: it reads, it never allocates or maps.
//! Every read is bounds-checked and fails with a [`MemError`] value, never
//! a panic. Backends: [`Image`] (one contiguous byte image at a base
//! physical address), [`Regions`] (several disjoint images, e.g. a
//! snapshot plus scratch memory), [`RawMem`] (a raw pointer to frozen
//! memory), [`VolatileMem`] (a raw pointer to live memory), and plain
//! `[u8]` (an image at address 0).
//!
//! # Frozen and live memory
//!
//! Rust lets a `&[u8]` exist only while nobody writes the bytes it covers.
//! Page tables in use are written all the time: the MMU sets accessed and
//! dirty bits, other vCPUs map and unmap. So there are two promises:
//!
//! - **Frozen** memory (a snapshot, a dump, a paused guest whose tables no
//!   CPU uses) is lent as slices ([`PhysMem::lend`]); the walker scans
//!   tables through them, 16 entries at a time. [`Image`], [`Regions`],
//!   `[u8]` and [`RawMem`] are frozen.
//! - **Live** memory (a running guest) is never lent: [`VolatileMem`]
//!   hands the walker a [`VolatileSlice`] ([`PhysMem::table`]), and every
//!   entry is read once, with a volatile load, then decoded from that
//!   copy. A walk of live memory is a walk of entries each as it was at
//!   some moment; it is not an atomic snapshot of the hierarchy (take one
//!   with [`VolatileMem::snapshot`] if you need that), but it is never
//!   undefined behaviour, and it never panics whatever the entries say.
//!
//! `unsafe` in this crate lives here, in the two raw-pointer backends and
//! [`VolatileSlice`] (each constructor states its contract), and in the
//! scanner's SSE2 block classification (`walk/block.rs`: intrinsics on
//! values, no memory access).

use core::borrow::Borrow;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::addr::PhysAddr;
use crate::error::MemError;
use crate::mode::PagingMode;

/// Read access to guest-physical memory.
///
/// The one required method lends `len` bytes at a physical address as a
/// slice: the walker borrows each page table whole and iterates it without
/// per-entry calls. The walker asks through [`table`](Self::table), which
/// goes through `lend` unless a live backend ([`VolatileMem`]) overrides
/// it with a volatile view; single-entry reads are provided on top of
/// `table`.
///
/// Implementing `lend` promises that the bytes lent are not written by
/// anyone while the borrow lasts (it is safe Rust: the borrow checker and
/// the backend's own `unsafe` contracts keep it). Memory that can change
/// underneath must override [`table`](Self::table) instead and fail
/// `lend` with [`MemError::Live`].
///
/// A backend whose memory is not contiguous for a requested span returns
/// [`MemError::Split`]; a table the walker cannot borrow is reported as a
/// fault, exactly like one outside memory.
///
/// # Examples
///
/// ```
/// use ptwalk::{Image, PhysAddr, PhysMem};
///
/// let mut bytes = vec![0u8; 0x2000];
/// bytes[0x1004..0x1008].copy_from_slice(&0xdead_b007u32.to_le_bytes());
/// let mem = Image::new(PhysAddr(0x10_0000), bytes);
/// assert_eq!(mem.read_u32(PhysAddr(0x10_1004)), Ok(0xdead_b007));
/// assert!(mem.read_u32(PhysAddr(0x10_2000)).is_err());
/// ```
pub trait PhysMem {
    /// Whether this memory is frozen: every table it hands out is lent
    /// bytes, and lending the same address again, for as long as the
    /// memory is borrowed, gives the same bytes (a snapshot, a dump, an
    /// image nobody writes). Then an alias the follow consumer meets in
    /// the memory it walks resolves to the very table its own entry names
    /// (the owner's path, read again, reads the same entries), and the
    /// walk descends it without looking the owner's entry up again.
    /// `false` by default, which is always correct; the crate's frozen
    /// backends say `true`. A method, not a constant, so that `dyn
    /// PhysMem` stays usable.
    #[inline]
    fn frozen(&self) -> bool {
        false
    }

    /// Lends the `len` bytes at `pa` as one slice.
    ///
    /// # Errors
    ///
    /// [`MemError::OutOfBounds`] if any byte lies outside memory,
    /// [`MemError::Split`] if the bytes are not contiguous in this backend.
    /// [`MemError::Live`] if the memory is live and is never lent.
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError>;

    /// The `len` bytes at `pa` as the walker reads a table: lent bytes
    /// ([`TableView::Bytes`], the default, through [`lend`](Self::lend))
    /// or, for live memory, a volatile view ([`TableView::Volatile`]).
    ///
    /// # Errors
    ///
    /// As [`lend`](Self::lend), except that a live backend does not fail
    /// with [`MemError::Live`] here.
    #[inline]
    fn table(&self, pa: PhysAddr, len: usize) -> Result<Table<'_>, MemError> {
        self.lend(pa, len).map(Table::from)
    }

    /// Reads a little-endian `u32` (a 32-bit page-table entry).
    ///
    /// # Errors
    ///
    /// As [`table`](Self::table).
    fn read_u32(&self, pa: PhysAddr) -> Result<u32, MemError> {
        let oob = MemError::OutOfBounds { pa, len: 4 };
        self.table(pa, 4)?.read_u32(0).ok_or(oob)
    }

    /// Reads a little-endian `u64` (a 64-bit page-table entry).
    ///
    /// # Errors
    ///
    /// As [`table`](Self::table).
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let oob = MemError::OutOfBounds { pa, len: 8 };
        self.table(pa, 8)?.read_u64(0).ok_or(oob)
    }
}

impl<T: PhysMem + ?Sized> PhysMem for &T {
    #[inline]
    fn frozen(&self) -> bool {
        (**self).frozen()
    }
    #[inline]
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        (**self).lend(pa, len)
    }
    #[inline]
    fn table(&self, pa: PhysAddr, len: usize) -> Result<Table<'_>, MemError> {
        (**self).table(pa, len)
    }
    #[inline]
    fn read_u32(&self, pa: PhysAddr) -> Result<u32, MemError> {
        (**self).read_u32(pa)
    }
    #[inline]
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        (**self).read_u64(pa)
    }
}

/// Bounds-checked sub-slice of `bytes`, which start at physical `base`.
#[inline]
pub(crate) fn lend_from(
    bytes: &[u8],
    base: u64,
    pa: PhysAddr,
    len: usize,
) -> Result<&[u8], MemError> {
    let oob = MemError::OutOfBounds {
        pa,
        len: len as u64,
    };
    let off = pa.0.checked_sub(base).ok_or(oob)?;
    let off = usize::try_from(off).map_err(|_| oob)?;
    // Against the last offset a table can start at, which a loop over
    // tables of one size hoists: one compare per table fetched.
    match bytes.len().checked_sub(len) {
        Some(last) if off <= last => bytes.get(off..off + len).ok_or(oob),
        _ => Err(oob),
    }
}

/// A byte slice is memory starting at physical address 0.
impl PhysMem for [u8] {
    #[inline]
    fn frozen(&self) -> bool {
        true
    }
    #[inline]
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        lend_from(self, 0, pa, len)
    }
}

/// One contiguous image of physical memory: byte `i` of `bytes` is
/// physical address `base + i`.
///
/// `B` is anything that derefs to bytes: a `Vec<u8>`, a `&[u8]`, a memory
/// map.
#[derive(Clone, Debug)]
pub struct Image<B> {
    base: PhysAddr,
    bytes: B,
}

impl<B: AsRef<[u8]>> Image<B> {
    /// An image whose first byte is physical address `base`.
    pub const fn new(base: PhysAddr, bytes: B) -> Self {
        Image { base, bytes }
    }

    /// The physical address of the first byte.
    #[must_use]
    pub const fn base(&self) -> PhysAddr {
        self.base
    }

    /// The image's bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// One past the last physical address (saturating).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.base.0.saturating_add(self.bytes().len() as u64)
    }

    /// Gives the bytes back.
    pub fn into_inner(self) -> B {
        self.bytes
    }
}

impl<B: AsRef<[u8]>> PhysMem for Image<B> {
    #[inline]
    fn frozen(&self) -> bool {
        true
    }
    #[inline]
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        lend_from(self.bytes.as_ref(), self.base.0, pa, len)
    }
}

/// Several disjoint images, e.g. a snapshot and a scratch region.
///
/// Lookups binary-search the regions, which [`Regions::new`] checks are
/// sorted by base and do not overlap.
///
/// # Examples
///
/// ```
/// use ptwalk::{Image, PhysAddr, PhysMem, Regions};
///
/// let low = Image::new(PhysAddr(0), vec![1u8; 0x1000]);
/// let high = Image::new(PhysAddr(0x8000), vec![2u8; 0x1000]);
/// let regions = [low, high];
/// let mem = Regions::new(&regions).unwrap();
/// assert_eq!(mem.read_u32(PhysAddr(0x8ffc)), Ok(0x0202_0202));
/// assert!(mem.read_u32(PhysAddr(0x4000)).is_err());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Regions<'a, B> {
    regions: &'a [Image<B>],
}

/// [`Regions::new`] was given regions out of order or overlapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RegionsError {
    /// Index of the first region that starts before the previous one ends.
    pub index: usize,
}

impl core::fmt::Display for RegionsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "memory region {} starts before region {} ends (regions must be sorted and disjoint)",
            self.index,
            self.index.wrapping_sub(1)
        )
    }
}

impl core::error::Error for RegionsError {}

impl<'a, B: AsRef<[u8]>> Regions<'a, B> {
    /// Memory made of `regions`, which must be sorted by base and disjoint.
    ///
    /// # Errors
    ///
    /// [`RegionsError`] naming the first region that overlaps or precedes
    /// the one before it.
    pub fn new(regions: &'a [Image<B>]) -> Result<Self, RegionsError> {
        for (i, w) in regions.windows(2).enumerate() {
            if w[1].base.0 < w[0].end() {
                return Err(RegionsError { index: i + 1 });
            }
        }
        Ok(Regions { regions })
    }
}

impl<B: AsRef<[u8]>> PhysMem for Regions<'_, B> {
    #[inline]
    fn frozen(&self) -> bool {
        true
    }
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        // The last region whose base is <= pa.
        let i = self.regions.partition_point(|r| r.base.0 <= pa.0);
        let Some(region) = i.checked_sub(1).map(|i| &self.regions[i]) else {
            return Err(MemError::OutOfBounds {
                pa,
                len: len as u64,
            });
        };
        match region.lend(pa, len) {
            Ok(b) => Ok(b),
            // Starts inside this region but runs past its end: is the rest
            // in memory (then the span is split) or not?
            Err(_) if pa.0 < region.end() && self.covers(i, pa.0, len as u64) => {
                Err(MemError::Split {
                    pa,
                    len: len as u64,
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl<B: AsRef<[u8]>> Regions<'_, B> {
    /// Whether regions `i - 1..` cover `[pa, pa + len)` without a gap.
    fn covers(&self, i: usize, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        let mut reached = self.regions[i - 1].end();
        for r in &self.regions[i..] {
            if reached >= end || r.base.0 != reached {
                break;
            }
            reached = r.end();
        }
        reached >= end
    }
}

/// Bytes of entries the walker tests at once when skipping absent
/// entries (16 four-byte or 8 eight-byte entries).
pub(crate) const BLOCK: usize = 64;

/// A span of guest-physical memory as the walker reads it: lent bytes of
/// frozen memory, or a volatile view of live memory ([`view`](Self::view)
/// tells which).
///
/// Returned by [`PhysMem::table`]. Reads are bounds-checked and
/// little-endian. It is two words (a pointer and a tagged length), so the
/// walker's stack of tables stays small.
///
/// # Examples
///
/// ```
/// use ptwalk::{Table, TableView};
///
/// let bytes = [1u8, 0, 0, 0, 2, 0, 0, 0];
/// let t = Table::from(&bytes[..]);
/// assert_eq!((t.len(), t.read_u32(4)), (8, Some(2)));
/// assert!(matches!(t.view(), TableView::Bytes(b) if b == &bytes[..]));
/// ```
#[derive(Clone, Copy)]
pub struct Table<'a> {
    ptr: NonNull<u8>,
    /// The length, with [`LIVE`] set for a volatile view.
    tagged: usize,
    _life: PhantomData<&'a [u8]>,
}

/// The tag bit of [`Table::tagged`]: no length of either kind reaches it
/// (both are at most `isize::MAX`).
const LIVE: usize = 1 << (usize::BITS - 1);

/// What a [`Table`] is.
#[derive(Clone, Copy, Debug)]
pub enum TableView<'a> {
    /// Frozen memory, lent as a slice.
    Bytes(&'a [u8]),
    /// Live memory, read only with volatile loads.
    Volatile(VolatileSlice<'a>),
}

impl<'a> From<&'a [u8]> for Table<'a> {
    #[inline(always)]
    fn from(b: &'a [u8]) -> Self {
        Table {
            ptr: NonNull::from(b).cast(),
            // A slice's length is at most `isize::MAX`: the tag is clear.
            tagged: b.len(),
            _life: PhantomData,
        }
    }
}

impl<'a> From<VolatileSlice<'a>> for Table<'a> {
    #[inline(always)]
    fn from(v: VolatileSlice<'a>) -> Self {
        Table {
            ptr: v.ptr,
            tagged: v.len | LIVE,
            _life: PhantomData,
        }
    }
}

// SAFETY: a `Table` is a `&'a [u8]` or a `VolatileSlice<'a>` in two
// words; both are `Send` and `Sync`, and it only ever reads.
#[allow(unsafe_code)]
unsafe impl Send for Table<'_> {}
// SAFETY: as for `Send` above.
#[allow(unsafe_code)]
unsafe impl Sync for Table<'_> {}

impl fmt::Debug for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

impl<'a> Table<'a> {
    /// The empty table (lent bytes, none).
    pub const EMPTY: Table<'static> = Table {
        ptr: NonNull::dangling(),
        tagged: 0,
        _life: PhantomData,
    };

    /// Lent bytes or a volatile view: what this table was made from.
    #[must_use]
    #[inline(always)]
    #[allow(unsafe_code)]
    pub fn view(self) -> TableView<'a> {
        let len = self.tagged & !LIVE;
        if self.tagged & LIVE == 0 {
            // SAFETY: without the tag this table was made by
            // `From<&'a [u8]>` (the fields are private), from a slice of
            // exactly this pointer and length, borrowed for `'a`: we give
            // back that same borrow.
            TableView::Bytes(unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), len) })
        } else {
            // SAFETY: with the tag this table was made by
            // `From<VolatileSlice<'a>>` from a view of this pointer and
            // length (a length that fits below the tag): the same view,
            // under the contract its own `new` was called with.
            TableView::Volatile(unsafe { VolatileSlice::new(self.ptr, len) })
        }
    }

    /// Its length in bytes.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.tagged & !LIVE
    }

    /// Whether it has no bytes.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The little-endian `u32` at byte offset `off`, if it lies inside.
    #[must_use]
    #[inline]
    pub fn read_u32(&self, off: usize) -> Option<u32> {
        match self.view() {
            TableView::Bytes(b) => Some(u32::from_le_bytes(*b.get(off..)?.first_chunk()?)),
            TableView::Volatile(v) => v.read_u32(off),
        }
    }

    /// The little-endian `u64` at byte offset `off`, if it lies inside.
    #[must_use]
    #[inline]
    pub fn read_u64(&self, off: usize) -> Option<u64> {
        match self.view() {
            TableView::Bytes(b) => Some(u64::from_le_bytes(*b.get(off..)?.first_chunk()?)),
            TableView::Volatile(v) => v.read_u64(off),
        }
    }

    /// Entry `i` of a table of mode `P`; an entry that is not inside reads
    /// as 0 (absent). The walker only asks for entries inside.
    #[inline]
    pub(crate) fn load<P: PagingMode>(&self, i: usize) -> u64 {
        match self.view() {
            TableView::Bytes(b) => P::load(b, i),
            TableView::Volatile(v) => v.load::<P>(i),
        }
    }
}

/// What the walker's table scans need from a span of entries; implemented
/// by lent bytes (the frozen fast path, exactly the slice code) and by
/// [`VolatileSlice`] (every entry read once, volatile, into a copy).
pub(crate) trait Entries: Copy {
    /// A block of [`BLOCK`] bytes: borrowed, or copied out of live memory.
    type Block: Borrow<[u8; BLOCK]>;
    /// Bytes left.
    fn len(&self) -> usize;
    /// The first block and the rest, if a whole block is left.
    fn split_block(self) -> Option<(Self::Block, Self)>;
    /// The first entry (read once) and the rest, if an entry is left.
    fn split_entry<P: PagingMode>(self) -> Option<(u64, Self)>;
    /// Entry `i` (inside, or 0).
    fn entry<P: PagingMode>(self, i: usize) -> u64;
    /// Bytes `start..end` (inside; empty for live memory if not).
    fn sub(self, start: usize, end: usize) -> Self;
}

impl<'a> Entries for &'a [u8] {
    type Block = &'a [u8; BLOCK];
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    #[inline(always)]
    fn split_block(self) -> Option<(&'a [u8; BLOCK], Self)> {
        self.split_first_chunk::<BLOCK>()
    }
    #[inline(always)]
    fn split_entry<P: PagingMode>(self) -> Option<(u64, Self)> {
        let (entry, tail) = self.split_at_checked(P::ENTRY_BYTES)?;
        Some((P::load(entry, 0), tail))
    }
    #[inline(always)]
    fn entry<P: PagingMode>(self, i: usize) -> u64 {
        P::load(self, i)
    }
    #[inline(always)]
    fn sub(self, start: usize, end: usize) -> Self {
        &self[start..end]
    }
}

impl Entries for VolatileSlice<'_> {
    type Block = [u8; BLOCK];
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    #[inline]
    fn split_block(self) -> Option<([u8; BLOCK], Self)> {
        let mut block = [0u8; BLOCK];
        let tail = self.subslice(BLOCK, self.len.checked_sub(BLOCK)?)?;
        self.copy_to(&mut block);
        Some((block, tail))
    }
    #[inline]
    fn split_entry<P: PagingMode>(self) -> Option<(u64, Self)> {
        let e = P::ENTRY_BYTES;
        let tail = self.subslice(e, self.len.checked_sub(e)?)?;
        Some((self.load::<P>(0), tail))
    }
    #[inline]
    fn entry<P: PagingMode>(self, i: usize) -> u64 {
        self.load::<P>(i)
    }
    #[inline]
    fn sub(self, start: usize, end: usize) -> Self {
        end.checked_sub(start)
            .and_then(|n| self.subslice(start, n))
            .unwrap_or(VolatileSlice::EMPTY)
    }
}

/// A bounds-checked view of memory that may change at any time, read only
/// with volatile loads: no `&[u8]` over it is ever formed.
///
/// Aligned 4- and 8-byte reads are single loads (on a 64-bit host), so an
/// entry written whole by another CPU or the MMU is seen either before or
/// after the write, never torn; a read at a misaligned address is made of
/// byte loads and may tear.
///
/// # Examples
///
/// ```
/// use core::ptr::NonNull;
/// use ptwalk::VolatileSlice;
///
/// let mut bytes = [0u8; 16];
/// bytes[4..8].copy_from_slice(&0xdead_b007u32.to_le_bytes());
/// let ptr = NonNull::from(&mut bytes).cast::<u8>();
/// // SAFETY: `bytes` outlives `v`, and is only written through `ptr`.
/// let v = unsafe { VolatileSlice::new(ptr, 16) };
/// assert_eq!(v.read_u32(4), Some(0xdead_b007));
/// assert_eq!(v.read_u32(14), None);
/// ```
#[derive(Clone, Copy)]
pub struct VolatileSlice<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _life: PhantomData<&'a [u8]>,
}

impl fmt::Debug for VolatileSlice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolatileSlice")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: a `VolatileSlice` only reads, with volatile loads, memory that
// `new`'s caller promised stays readable for `'a` and may be written by
// anyone meanwhile; moving the view to another thread changes nothing.
#[allow(unsafe_code)]
unsafe impl Send for VolatileSlice<'_> {}
// SAFETY: as for `Send`: concurrent volatile reads of readable memory
// from several threads are fine, and the view itself is never written.
#[allow(unsafe_code)]
unsafe impl Sync for VolatileSlice<'_> {}

#[allow(unsafe_code)]
impl<'a> VolatileSlice<'a> {
    /// The empty view.
    pub const EMPTY: VolatileSlice<'static> = VolatileSlice {
        ptr: NonNull::dangling(),
        len: 0,
        _life: PhantomData,
    };

    /// A view of the `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// - For all of `'a`, `ptr..ptr + len` lies inside one allocation (a
    ///   Rust allocation or one mapping) that stays readable (mapped)
    ///   throughout; `ptr` is non-null by type, and need not be aligned.
    /// - `len <= isize::MAX`.
    /// - Anyone may write the bytes concurrently: other CPUs, the MMU,
    ///   devices, another process. Rust code in this process must write
    ///   them only through raw pointers with volatile or atomic stores
    ///   (never through a `&mut`), else that write races with our reads.
    #[must_use]
    pub const unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        VolatileSlice {
            ptr,
            len,
            _life: PhantomData,
        }
    }

    /// Its length in bytes.
    #[must_use]
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    #[must_use]
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at offset `off`, if they lie inside.
    #[must_use]
    #[inline]
    pub fn subslice(&self, off: usize, len: usize) -> Option<VolatileSlice<'a>> {
        if off.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: `off + len <= self.len`, so the result stays inside the
        // span `new`'s caller vouched for (same allocation, same `'a`,
        // same writers); `off <= len <= isize::MAX` keeps `add` in bounds
        // and the pointer non-null.
        Some(unsafe { VolatileSlice::new(self.ptr.add(off), len) })
    }

    /// The little-endian `u32` at offset `off`, if it lies inside: one
    /// volatile load if the address is 4-aligned, else four byte loads.
    #[must_use]
    #[inline]
    pub fn read_u32(&self, off: usize) -> Option<u32> {
        let p = self.subslice(off, 4)?.ptr.as_ptr();
        let v = if p.cast::<u32>().is_aligned() {
            // SAFETY: `subslice` checked the 4 bytes lie inside the
            // readable span, and the address is aligned for `u32`.
            unsafe { p.cast::<u32>().read_volatile() }.to_le()
        } else {
            let mut b = [0u8; 4];
            // SAFETY: the 4 bytes are inside (checked by `subslice`).
            unsafe { read_bytes(p, &mut b) };
            u32::from_le_bytes(b)
        };
        Some(v)
    }

    /// The little-endian `u64` at offset `off`, if it lies inside: one
    /// volatile load if the address is 8-aligned, else byte loads.
    #[must_use]
    #[inline]
    pub fn read_u64(&self, off: usize) -> Option<u64> {
        let p = self.subslice(off, 8)?.ptr.as_ptr();
        let v = if p.cast::<u64>().is_aligned() {
            // SAFETY: `subslice` checked the 8 bytes lie inside the
            // readable span, and the address is aligned for `u64`.
            unsafe { p.cast::<u64>().read_volatile() }.to_le()
        } else {
            let mut b = [0u8; 8];
            // SAFETY: the 8 bytes are inside (checked by `subslice`).
            unsafe { read_bytes(p, &mut b) };
            u64::from_le_bytes(b)
        };
        Some(v)
    }

    /// Copies the first `min(self.len(), dst.len())` bytes into `dst`
    /// with volatile loads (8 aligned bytes at a time where it can, so
    /// aligned entries are copied whole), and returns how many.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        let mut off = 0;
        while off < n {
            let rest = n - off;
            if rest >= 8 {
                if let Some(v) = self.read_u64(off).filter(|_| self.aligned(off, 8)) {
                    dst[off..off + 8].copy_from_slice(&v.to_le_bytes());
                    off += 8;
                    continue;
                }
            }
            if rest >= 4 {
                if let Some(v) = self.read_u32(off).filter(|_| self.aligned(off, 4)) {
                    dst[off..off + 4].copy_from_slice(&v.to_le_bytes());
                    off += 4;
                    continue;
                }
            }
            // SAFETY: `off < n <= self.len`: the byte is inside.
            let b = unsafe { self.ptr.as_ptr().add(off).read_volatile() };
            dst[off] = b;
            off += 1;
        }
        n
    }

    fn aligned(&self, off: usize, align: usize) -> bool {
        (self.ptr.as_ptr() as usize).wrapping_add(off) % align == 0
    }

    /// Entry `i` of a table of mode `P`, or 0 if it is not inside.
    #[inline]
    fn load<P: PagingMode>(&self, i: usize) -> u64 {
        let off = i.saturating_mul(P::ENTRY_BYTES);
        let v = if P::ENTRY_BYTES == 8 {
            self.read_u64(off)
        } else {
            self.read_u32(off).map(u64::from)
        };
        v.unwrap_or(0)
    }
}

/// Reads `dst.len()` bytes at `p`, one volatile byte load each.
///
/// # Safety
///
/// `p` must be valid for reads of `dst.len()` bytes (writers may run
/// concurrently as [`VolatileSlice::new`] allows).
#[allow(unsafe_code)]
#[inline]
unsafe fn read_bytes(p: *const u8, dst: &mut [u8]) {
    for (i, b) in dst.iter_mut().enumerate() {
        // SAFETY: `i < dst.len()`, and the caller promised that many
        // readable bytes at `p`.
        *b = unsafe { p.add(i).read_volatile() };
    }
}

/// Frozen physical memory reached through a raw pointer: a paused guest,
/// or guest memory mapped at a known host address while no CPU uses or
/// changes its tables. It lends slices, so the walk takes the fast path.
///
/// For memory a running guest (or its MMU, which sets accessed and dirty
/// bits in every table it walks) may write, use [`VolatileMem`] instead:
/// lending a `&[u8]` over bytes that change is undefined behaviour.
#[derive(Clone, Copy, Debug)]
pub struct RawMem<'a> {
    ptr: NonNull<u8>,
    base: PhysAddr,
    len: usize,
    _borrow: PhantomData<&'a [u8]>,
}

#[allow(unsafe_code)]
impl<'a> RawMem<'a> {
    /// Memory whose physical address `base + i` is at `ptr + i`, for
    /// `i < len`. A null `ptr` is empty memory (every read fails).
    ///
    /// # Safety
    ///
    /// For all of `'a`:
    ///
    /// - `ptr..ptr + len` lies inside one allocation (or one mapping) and
    ///   is readable; `len <= isize::MAX`. (No alignment is needed.)
    /// - Nobody writes those bytes: no other thread or process, no other
    ///   CPU, no device, and no MMU (so no CPU may be running on page
    ///   tables inside them): the walker borrows them as `&'a [u8]`.
    #[must_use]
    pub const unsafe fn new(ptr: *const u8, base: PhysAddr, len: usize) -> Self {
        let (ptr, len) = match NonNull::new(ptr.cast_mut()) {
            Some(p) => (p, len),
            None => (NonNull::dangling(), 0),
        };
        RawMem {
            ptr,
            base,
            len,
            _borrow: PhantomData,
        }
    }

    fn as_slice(&self) -> &'a [u8] {
        // SAFETY: `ptr` is non-null (a null one became a dangling pointer
        // with `len == 0`, which `from_raw_parts` accepts); `new`'s caller
        // promised `ptr..ptr + len` is one readable allocation with
        // `len <= isize::MAX`, unwritten by anyone for all of `'a`, which
        // is exactly what a `&'a [u8]` needs. `u8` needs no alignment.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: `RawMem` is a read-only view of bytes that `new`'s caller promised
// stay valid and unwritten for `'a`, i.e. exactly a `&'a [u8]`, which is
// `Send` and `Sync`.
#[allow(unsafe_code)]
unsafe impl Send for RawMem<'_> {}
// SAFETY: as for `Send` above.
#[allow(unsafe_code)]
unsafe impl Sync for RawMem<'_> {}

impl PhysMem for RawMem<'_> {
    #[inline]
    fn frozen(&self) -> bool {
        true
    }
    #[inline]
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        lend_from(self.as_slice(), self.base.0, pa, len)
    }
}

/// Live physical memory reached through a raw pointer: a running guest
/// seen from inside, or from a hypervisor with guest memory mapped at a
/// known host address, whose tables other vCPUs and the MMU may write
/// while the walk runs.
///
/// Every entry is read once with a volatile load ([`VolatileSlice`]);
/// no `&[u8]` over the memory is ever formed, so [`lend`](PhysMem::lend)
/// always fails with [`MemError::Live`]. The walk, [`resolve`](crate::resolve)
/// and translation work; whatever needs lent bytes (compaction, page
/// contents) does not: copy the memory first ([`snapshot`](Self::snapshot))
/// and use the copy as an [`Image`].
///
/// Cost: an entry read is a bounds check and a load instead of a slice
/// index, and a block of 16 entries is copied out (16 loads) before it is
/// tested; the frozen backends are unaffected.
///
/// # Examples
///
/// ```
/// use ptwalk::{PhysAddr, PhysMem, VolatileMem, Walk, WalkExt};
///
/// let mut bytes = vec![0u8; 0x3000];
/// bytes[0x1000..0x1004].copy_from_slice(&0x2003u32.to_le_bytes()); // PDE 0 -> PT 0x2000
/// bytes[0x2004..0x2008].copy_from_slice(&0x7003u32.to_le_bytes()); // VA 0x1000 -> 0x7000
/// let ptr = bytes.as_mut_ptr();
/// // SAFETY: `bytes` outlives `mem`, stays allocated, and is only written
/// // through `ptr` (with volatile stores) while `mem` lives.
/// let mem = unsafe { VolatileMem::new(ptr, PhysAddr(0), 0x3000) };
/// let roots = [PhysAddr(0x1000)];
/// assert_eq!(Walk::new(&mem, &roots)?.leaves().count(), 1);
/// // The guest maps another page; the next walk sees it.
/// // SAFETY: inside `bytes`; a volatile store, as `VolatileMem::new` asks.
/// unsafe { ptr.add(0x2008).cast::<u32>().write_volatile(0x8003u32.to_le()) };
/// assert_eq!(Walk::new(&mem, &roots)?.leaves().count(), 2);
/// assert!(mem.lend(PhysAddr(0x1000), 4).is_err()); // never lent
/// assert_eq!(mem.read_u32(PhysAddr(0x2008)), Ok(0x8003));
/// # Ok::<(), ptwalk::WalkError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct VolatileMem<'a> {
    mem: VolatileSlice<'a>,
    base: PhysAddr,
}

#[allow(unsafe_code)]
impl<'a> VolatileMem<'a> {
    /// Memory whose physical address `base + i` is at `ptr + i`, for
    /// `i < len`. A null `ptr` is empty memory (every read fails).
    ///
    /// # Safety
    ///
    /// For all of `'a`:
    ///
    /// - `ptr..ptr + len` lies inside one allocation (or one mapping)
    ///   that stays readable (mapped) throughout; `len <= isize::MAX`.
    ///   (No alignment is needed; aligned entries are read whole.)
    /// - Anyone may write the bytes concurrently: other vCPUs, the MMU,
    ///   devices, another process. Rust code in this process must write
    ///   them only through raw pointers with volatile or atomic stores,
    ///   never through a reference.
    #[must_use]
    pub unsafe fn new(ptr: *const u8, base: PhysAddr, len: usize) -> Self {
        let mem = match NonNull::new(ptr.cast_mut()) {
            // SAFETY: the caller's promise is `VolatileSlice::new`'s.
            Some(p) => unsafe { VolatileSlice::new(p, len) },
            None => VolatileSlice::EMPTY,
        };
        VolatileMem { mem, base }
    }
}

impl<'a> VolatileMem<'a> {
    /// The physical address of the first byte.
    #[must_use]
    pub const fn base(&self) -> PhysAddr {
        self.base
    }

    /// Its length in bytes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether it has no bytes.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// A volatile view of the `len` bytes at `pa`.
    ///
    /// # Errors
    ///
    /// [`MemError::OutOfBounds`] if any byte lies outside this memory.
    pub fn slice(&self, pa: PhysAddr, len: usize) -> Result<VolatileSlice<'a>, MemError> {
        let oob = MemError::OutOfBounds {
            pa,
            len: len as u64,
        };
        let off = pa.0.checked_sub(self.base.0).ok_or(oob)?;
        let off = usize::try_from(off).map_err(|_| oob)?;
        self.mem.subslice(off, len).ok_or(oob)
    }

    /// Copies the `dst.len()` bytes at `pa` into `dst` with volatile
    /// loads: a frozen copy to walk, compact or inspect at leisure.
    ///
    /// # Errors
    ///
    /// [`MemError::OutOfBounds`] if any byte lies outside this memory
    /// (then `dst` is untouched).
    pub fn snapshot(&self, pa: PhysAddr, dst: &mut [u8]) -> Result<(), MemError> {
        self.slice(pa, dst.len())?.copy_to(dst);
        Ok(())
    }
}

impl PhysMem for VolatileMem<'_> {
    /// Always fails: live memory is never lent as a slice.
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        self.slice(pa, len)?;
        Err(MemError::Live {
            pa,
            len: len as u64,
        })
    }

    #[inline]
    fn table(&self, pa: PhysAddr, len: usize) -> Result<Table<'_>, MemError> {
        self.slice(pa, len).map(Table::from)
    }
}

/// The raw-pointer backends and the volatile view: the `unsafe` of the
/// crate, run under Miri by CI (`cargo +nightly miri test --lib mem::`).
#[cfg(all(test, feature = "std"))]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::{I686, OwnerIndex, OwnerSlot, Walk, WalkEvent, WalkExt};
    use alloc::vec;
    use alloc::vec::Vec;

    /// Two spaces over 6 pages: roots `0x1000` and `0x2000` share the PT
    /// at `0x3000` (at VA 0 and `0xC000_0000`), root `0x1000` also has a
    /// 4 MiB page and a PT at `0x4000` with a full block and a sparse tail.
    fn image() -> Vec<u8> {
        let mut m = vec![0u8; 0x6000];
        let mut put = |pa: usize, v: u32| m[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
        put(0x1000, 0x3007);
        put(0x1000 + 0x300 * 4, 0x3003);
        put(0x1000 + 4, 0x0080_0083);
        put(0x1000 + 8, 0x4007);
        put(0x2000 + 0x300 * 4, 0x3003);
        put(0x2000 + 0x3FF * 4, 0x9_9003); // PT outside memory: a fault
        for i in 0..20 {
            put(0x4000 + i * 4, 0x10_0003 + ((i as u32) << 12));
        }
        put(0x4000 + 1000 * 4, 0x20_0005);
        put(0x3000 + 5 * 4, 0x7001);
        put(0x3000 + 1023 * 4, 0x8003);
        m
    }

    const ROOTS: [PhysAddr; 2] = [PhysAddr(0x1000), PhysAddr(0x2000)];

    fn events<M: PhysMem + ?Sized>(mem: &M, pse: bool, by_fold: bool) -> [Vec<WalkEvent>; 2] {
        let mut slots = [OwnerSlot::EMPTY; 16];
        let collect = |w: &mut dyn Iterator<Item = WalkEvent>| w.collect::<Vec<_>>();
        let refs = Walk::new(mem, &ROOTS)
            .unwrap()
            .with_mode(I686 { pse })
            .with_owners(OwnerIndex::new(&mut slots[..]))
            .references();
        let refs = if by_fold {
            refs.fold(Vec::new(), |mut v, e| {
                v.push(e);
                v
            })
        } else {
            collect(&mut { refs })
        };
        let follow = Walk::new(mem, &ROOTS)
            .unwrap()
            .with_mode(I686 { pse })
            .with_owners(OwnerIndex::new(&mut slots[..]))
            .follow_aliases();
        let follow = if by_fold {
            follow.fold(Vec::new(), |mut v, e| {
                v.push(e);
                v
            })
        } else {
            collect(&mut { follow })
        };
        [refs, follow]
    }

    #[test]
    fn raw_and_volatile_memory_walk_like_the_slice() {
        let mut buf = image();
        // Under Miri (slow) one mode suffices: the unsafe paths are the same.
        let modes: &[bool] = if cfg!(miri) { &[true] } else { &[true, false] };
        for &pse in modes {
            for by_fold in [true, false] {
                let want = events(&buf[..], pse, by_fold);
                assert!(want[0].len() > 20 && want[1].len() > want[0].len());
                // SAFETY: `buf` outlives `raw` and nobody writes it meanwhile.
                let raw = unsafe { RawMem::new(buf.as_ptr(), PhysAddr(0), buf.len()) };
                assert_eq!(events(&raw, pse, by_fold), want);
                let ptr = buf.as_mut_ptr();
                // SAFETY: `buf` outlives `live`, which only reads; nobody writes.
                let live = unsafe { VolatileMem::new(ptr, PhysAddr(0), 0x6000) };
                assert_eq!(events(&live, pse, by_fold), want);
                // A volatile walk of a shifted base translates the same.
                // SAFETY: as above, 0x1000 bytes in from the start.
                let shifted =
                    unsafe { VolatileMem::new(ptr.add(0x1000), PhysAddr(0x1000), 0x5000) };
                assert_eq!(events(&shifted, pse, by_fold), want);
            }
        }
    }

    /// The guest changes its tables while the walk runs (through the same
    /// raw pointer, volatile stores): the walk neither panics nor reads
    /// through a reference, and sees entries written ahead of it.
    #[test]
    fn live_aliases_resolve_through_the_owner_as_it_is_now() {
        use crate::{OwnerIndex, OwnerSlot};
        // Two i686 spaces (PDs at 0x1000, 0x2000) whose entry 0 names one
        // page table (0x3000) mapping VA 0x5000.
        let mut buf = vec![0u8; 0x4000];
        buf[0x1000..0x1004].copy_from_slice(&0x3003u32.to_le_bytes());
        buf[0x2000..0x2004].copy_from_slice(&0x3003u32.to_le_bytes());
        buf[0x3000 + 5 * 4..0x3000 + 6 * 4].copy_from_slice(&0x9003u32.to_le_bytes());
        let ptr = buf.as_mut_ptr();
        // SAFETY: `buf` outlives `mem`, stays allocated, and is written
        // below only through `ptr`, with a volatile store.
        let mem = unsafe { VolatileMem::new(ptr, PhysAddr(0), 0x4000) };
        let roots = [PhysAddr(0x1000), PhysAddr(0x2000)];
        let mut slots = [OwnerSlot::EMPTY; 16];
        let mut walk = Walk::new(&mem, &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(&mut slots[..]))
            .follow_aliases();
        let first = walk.next().unwrap();
        assert!(matches!(first, WalkEvent::Leaf(l) if l.space.0 == 0 && l.va.0 == 0x5000));
        // The owner unmaps the table; space 1 still names it. Live memory
        // is never frozen, so the alias is resolved through the owner's
        // entry as it is now: nothing there, so nothing here.
        assert!(!mem.frozen());
        for i in 0..4 {
            // SAFETY: inside `buf`; a volatile store through the pointer
            // `mem` was made from.
            unsafe { ptr.add(0x1000 + i).write_volatile(0) };
        }
        let rest: Vec<_> = walk.collect();
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert!(matches!(rest[0], WalkEvent::Invalid(i) if i.space.0 == 1 && i.va.0 == 0));
        drop(buf);
    }

    #[test]
    fn live_tables_change_under_the_walk() {
        let mut buf = image();
        let ptr = buf.as_mut_ptr();
        // SAFETY: `buf` outlives `mem`, stays allocated, and is written
        // below only through `ptr`, with volatile stores.
        let mem = unsafe { VolatileMem::new(ptr, PhysAddr(0), 0x6000) };
        // A `Vec<u8>` buffer need not be 4-aligned: store bytes.
        let vstore = |pa: usize, v: u32| {
            for (i, b) in v.to_le_bytes().into_iter().enumerate() {
                // SAFETY: `pa + i < 0x6000`, inside `buf`; a volatile
                // store through the pointer `mem` was made from.
                unsafe { ptr.add(pa + i).write_volatile(b) };
            }
        };
        let mut walk = Walk::new(&mem, &ROOTS).unwrap();
        let first = walk.next().unwrap();
        assert!(matches!(first, WalkEvent::Leaf(l) if l.va.0 == 0x5000));
        // Ahead of the cursor: a new leaf in the PT being scanned, a new
        // 4 MiB page in the directory; behind it: unmap the first table.
        vstore(0x3000 + 6 * 4, 0xA003);
        vstore(0x1000 + 12 * 4, 0x0C00_0083);
        vstore(0x1000, 0);
        // And make the second space's table point at itself.
        vstore(0x2000 + 0x300 * 4, 0x2003);
        let rest: Vec<_> = walk.by_ref().collect();
        assert!(
            rest.iter()
                .any(|e| matches!(e, WalkEvent::Leaf(l) if l.va.0 == 0x6000 && l.pa.0 == 0xA000))
        );
        assert!(
            rest.iter().any(
                |e| matches!(e, WalkEvent::Leaf(l) if l.va.0 == 12 << 22 && l.size_log2 == 22)
            )
        );
        // Space 1 now maps its own directory as a page table.
        assert!(
            rest.iter()
                .any(|e| matches!(e, WalkEvent::Leaf(l) if l.space.0 == 1 && l.pa.0 == 0x9_9000))
        );
        assert_eq!(walk.next(), None);
        // A fresh walk reads the new state whole: the freshly written
        // entries, not the unmapped table.
        let again: Vec<_> = Walk::new(&mem, &ROOTS).unwrap().leaves().collect();
        assert!(!again.iter().any(|l| l.space.0 == 0 && l.va.0 < 0x40_0000));
        drop(buf);
    }

    #[test]
    fn volatile_reads_are_bounds_checked_little_endian_and_aligned_or_not() {
        let mut buf: Vec<u8> = (0u8..32).collect();
        let ptr = NonNull::new(buf.as_mut_ptr()).unwrap();
        // SAFETY: `buf` outlives `v` and is not written meanwhile.
        let v = unsafe { VolatileSlice::new(ptr, 32) };
        for off in 0..=28 {
            let want = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap());
            assert_eq!(v.read_u32(off), Some(want), "u32 at {off}");
        }
        for off in 0..=24 {
            let want = u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
            assert_eq!(v.read_u64(off), Some(want), "u64 at {off}");
        }
        assert_eq!((v.read_u32(29), v.read_u64(25)), (None, None));
        assert!(v.read_u32(usize::MAX).is_none() && v.subslice(usize::MAX, 2).is_none());
        for start in 0..8 {
            let sub = v.subslice(start, 32 - start).unwrap();
            let mut out = [0xEEu8; 40];
            assert_eq!(sub.copy_to(&mut out), 32 - start);
            assert_eq!(&out[..32 - start], &buf[start..]);
            assert!(out[32 - start..].iter().all(|&b| b == 0xEE));
            let mut short = [0u8; 3];
            assert_eq!(sub.copy_to(&mut short), 3);
            assert_eq!(&short[..], &buf[start..start + 3]);
        }
        let t = Table::from(v);
        assert!(matches!(t.view(), TableView::Volatile(w) if w.len() == 32));
        assert_eq!(
            (t.len(), t.read_u32(4), t.read_u64(32)),
            (32, Some(0x0706_0504), None)
        );
        let b = Table::from(&buf[..]);
        assert!(matches!(b.view(), TableView::Bytes(s) if s == &buf[..]));
        assert_eq!((b.read_u32(28), b.read_u32(29)), (Some(0x1F1E_1D1C), None));
        assert_eq!(Table::EMPTY.len(), 0);
        drop(buf);
    }

    #[test]
    fn volatile_memory_is_never_lent_but_reads_and_snapshots() {
        let mut buf = image();
        // SAFETY: `buf` outlives `mem`, which only reads it.
        let mem = unsafe { VolatileMem::new(buf.as_mut_ptr(), PhysAddr(0x10_0000), 0x6000) };
        let pa = PhysAddr(0x10_1000);
        assert_eq!(mem.lend(pa, 4), Err(MemError::Live { pa, len: 4 }));
        assert!(matches!(
            mem.lend(PhysAddr(0x10_6000), 4),
            Err(MemError::OutOfBounds { .. })
        ));
        assert_eq!(mem.read_u32(pa), Ok(0x3007));
        assert_eq!(mem.read_u64(pa), Ok(0x0080_0083_0000_3007));
        assert!(mem.read_u32(PhysAddr(0x10_5FFD)).is_err());
        assert!(mem.read_u32(PhysAddr(0xF_FFFC)).is_err());
        assert!(mem.table(PhysAddr(u64::MAX), 4).is_err());
        let mut copy = vec![0u8; 0x6000];
        mem.snapshot(PhysAddr(0x10_0000), &mut copy).unwrap();
        assert_eq!(copy, buf);
        assert!(mem.snapshot(PhysAddr(0x10_0001), &mut copy).is_err());
        assert_eq!(
            (mem.base(), mem.len(), mem.is_empty()),
            (PhysAddr(0x10_0000), 0x6000, false)
        );
        drop(buf);
    }

    #[test]
    fn null_pointers_are_empty_memory() {
        // SAFETY: a null pointer is documented as empty memory.
        let raw = unsafe { RawMem::new(core::ptr::null(), PhysAddr(0), 4096) };
        // SAFETY: as above.
        let live = unsafe { VolatileMem::new(core::ptr::null(), PhysAddr(0), 4096) };
        assert!(raw.read_u32(PhysAddr(0)).is_err() && live.read_u32(PhysAddr(0)).is_err());
        assert!(live.is_empty());
        let ev: Vec<_> = Walk::single(&live, PhysAddr(0)).collect();
        assert!(matches!(ev[..], [WalkEvent::Fault(_)]));
        let ev: Vec<_> = Walk::single(&raw, PhysAddr(0)).collect();
        assert!(matches!(ev[..], [WalkEvent::Fault(_)]));
    }
}
