//! The input both targets decode: a 19-byte header (mode, roots, range,
//! policy bits) and then memory, either raw bytes (physical address 0
//! up) or, in sparse mode, 7-byte entry writes into 32 zeroed pages.
//! Every byte string decodes to something; nothing is rejected.

use ptwalk::PhysAddr;

/// Pages of memory in sparse mode.
pub const SPARSE_PAGES: usize = 32;
/// Bytes of header.
pub const HEADER: usize = 19;

/// One decoded case.
#[derive(Debug)]
pub struct Case {
    pub mem: Vec<u8>,
    pub roots: Vec<PhysAddr>,
    pub pse: bool,
    pub address: u64,
    pub len: u64,
    /// Eight free bits (the compact target's policy).
    pub policy: u8,
}

/// A root from two bytes: one of the first 32 pages, page-aligned or at
/// a multiple of 32 bytes into it (tables need not be aligned).
fn root(page: u8, off: u8) -> PhysAddr {
    let off = if off & 0x80 == 0 {
        0
    } else {
        u64::from(off & 0x7F) << 5
    };
    PhysAddr((u64::from(page) % SPARSE_PAGES as u64) << 12 | off)
}

/// Decodes `data` (never fails: short input is zero-padded).
pub fn decode(data: &[u8]) -> Case {
    let mut h = [0u8; HEADER];
    let n = data.len().min(HEADER);
    h[..n].copy_from_slice(&data[..n]);
    let body = &data[n..];
    let flags = h[0];
    let pse = flags & 1 != 0;
    let nroots = 1 + usize::from((flags >> 1) & 3);
    let sparse = flags & 8 != 0;
    let roots = (0..nroots)
        .map(|i| root(h[1 + 2 * i], h[2 + 2 * i]))
        .collect();
    let mut address = u64::from(u32::from_le_bytes([h[9], h[10], h[11], h[12]]));
    let mut len = u64::from(u32::from_le_bytes([h[13], h[14], h[15], h[16]]));
    if flags & 0x10 != 0 {
        len = u64::MAX; // to the top of the address space
    }
    if flags & 0x20 != 0 {
        address |= 0xFFFF_FFFF_0000_0000; // beyond what i686 can address
    }
    if flags & 0x40 != 0 {
        len <<= 12; // large ranges without large numbers
    }
    let mem = if sparse {
        let mut m = vec![0u8; SPARSE_PAGES << 12];
        for w in body.chunks_exact(7) {
            let page = usize::from(w[0]) % SPARSE_PAGES;
            let index = usize::from(u16::from_le_bytes([w[1], w[2]]) & 0x3FF);
            let at = (page << 12) + index * 4;
            m[at..at + 4].copy_from_slice(&w[3..7]);
        }
        m
    } else {
        body.to_vec()
    };
    Case {
        mem,
        roots,
        pse,
        address,
        len,
        policy: (h[17] & 0x7F) | (h[18] & 0x80),
    }
}
