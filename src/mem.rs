//! Guest-physical memory as the walker sees it: the [`PhysMem`] trait and
//! its backends.
//!
//! The trait is consumer-side only: it reads, it never allocates or maps.
//! Every read is bounds-checked and fails with a [`MemError`] value, never
//! a panic. Backends: [`Image`] (one contiguous byte image at a base
//! physical address), [`Regions`] (several disjoint images, e.g. a
//! snapshot plus scratch memory), [`RawMem`] (a raw pointer, for code
//! running inside the guest), and plain `[u8]` (an image at address 0).

use core::marker::PhantomData;

use crate::addr::PhysAddr;
use crate::error::MemError;

/// Read access to guest-physical memory.
///
/// The one required method lends `len` bytes at a physical address as a
/// slice: the walker borrows each page table whole and iterates it without
/// per-entry calls. Single-entry reads are provided on top of it.
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
    /// Lends the `len` bytes at `pa` as one slice.
    ///
    /// # Errors
    ///
    /// [`MemError::OutOfBounds`] if any byte lies outside memory,
    /// [`MemError::Split`] if the bytes are not contiguous in this backend.
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError>;

    /// Reads a little-endian `u32` (a 32-bit page-table entry).
    ///
    /// # Errors
    ///
    /// As [`lend`](Self::lend).
    fn read_u32(&self, pa: PhysAddr) -> Result<u32, MemError> {
        let b = self.lend(pa, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a little-endian `u64` (a 64-bit page-table entry).
    ///
    /// # Errors
    ///
    /// As [`lend`](Self::lend).
    fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let b = self.lend(pa, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        Ok(u64::from_le_bytes(a))
    }
}

impl<T: PhysMem + ?Sized> PhysMem for &T {
    #[inline]
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        (**self).lend(pa, len)
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
    let end = off.checked_add(len).ok_or(oob)?;
    bytes.get(off..end).ok_or(oob)
}

/// A byte slice is memory starting at physical address 0.
impl PhysMem for [u8] {
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

/// Physical memory reached through a raw pointer, for code running inside
/// the guest (or a hypervisor with guest memory mapped at a known host
/// address).
#[derive(Clone, Copy, Debug)]
pub struct RawMem<'a> {
    ptr: *const u8,
    base: PhysAddr,
    len: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> RawMem<'a> {
    /// Memory whose physical address `base + i` is at `ptr + i`, for
    /// `i < len`.
    ///
    /// # Safety
    ///
    /// For all of `'a`, `ptr` must be valid for reads of `len` bytes, and
    /// those bytes must not be written by anyone (the guest must be paused
    /// or the tables otherwise frozen): the walker borrows them as shared
    /// slices.
    #[must_use]
    pub const unsafe fn new(ptr: *const u8, base: PhysAddr, len: usize) -> Self {
        RawMem {
            ptr,
            base,
            len,
            _borrow: PhantomData,
        }
    }

    fn as_slice(&self) -> &'a [u8] {
        // SAFETY: `RawMem::new`'s caller promised that `ptr` is valid for
        // reads of `len` bytes that nobody writes for all of `'a`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

// SAFETY: `RawMem` is a read-only view of bytes that `new`'s caller promised
// stay valid and unwritten for `'a`, i.e. exactly a `&'a [u8]`, which is
// `Send` and `Sync`.
unsafe impl Send for RawMem<'_> {}
// SAFETY: as for `Send` above.
unsafe impl Sync for RawMem<'_> {}

impl PhysMem for RawMem<'_> {
    #[inline]
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], MemError> {
        lend_from(self.as_slice(), self.base.0, pa, len)
    }
}
