//! The model checked on small hand-built images, one or more per mode,
//! against expectations computed by hand from the SDM's formats.

use super::*;

/// A physical image of `size` bytes at PA 0, written entry by entry.
struct Img {
    mode: Mode,
    buf: Vec<u8>,
}

impl Img {
    fn new(mode: Mode, size: usize) -> Self {
        Img {
            mode,
            buf: vec![0; size],
        }
    }

    /// Writes entry `i` of the table at `table`.
    fn put(&mut self, table: u64, i: u64, raw: u64) {
        let w = self.mode.entry_bytes() as usize;
        let o = (table + i * w as u64) as usize;
        self.buf[o..o + w].copy_from_slice(&raw.to_le_bytes()[..w]);
    }
}

fn leaf(
    space: u32,
    va: u64,
    pa: u64,
    entry: u64,
    level: u8,
    size_log2: u8,
    access: u8,
) -> WalkEvent {
    WalkEvent::Leaf(Leaf {
        space: SpaceId(space),
        va: VirtAddr(va),
        pa: PhysAddr(pa),
        entry,
        level: Level(level),
        size_log2,
        access: Access::from_bits(access),
    })
}

fn fault(space: u32, va: u64, level: u8, pa: u64, reason: FaultReason) -> WalkEvent {
    WalkEvent::Fault(Fault {
        space: SpaceId(space),
        va: VirtAddr(va),
        level: Level(level),
        pa: PhysAddr(pa),
        reason,
    })
}

#[allow(clippy::too_many_arguments)]
fn alias(
    space: u32,
    va: u64,
    owner: u32,
    owner_va: u64,
    table: u64,
    entry: u64,
    level: u8,
    size_log2: u8,
) -> WalkEvent {
    WalkEvent::Aliasing(Aliasing {
        space: SpaceId(space),
        va: VirtAddr(va),
        owner: SpaceId(owner),
        owner_va: VirtAddr(owner_va),
        table: PhysAddr(table),
        entry,
        level: Level(level),
        size_log2,
    })
}

fn invalid(space: u32, va: u64, level: u8, size_log2: u8) -> WalkEvent {
    WalkEvent::Invalid(Invalid {
        space: SpaceId(space),
        va: VirtAddr(va),
        level: Level(level),
        size_log2,
    })
}

use FaultReason::{OutOfBounds as Oob, Reserved as Rsv};

const WHOLE: (u64, u64) = (0, u64::MAX);

fn refs(mode: Mode, mem: &[u8], roots: &[u64], (a, l): (u64, u64)) -> Vec<WalkEvent> {
    model(mode, mem, roots, a, l, Consumer::References)
}

fn follow(mode: Mode, mem: &[u8], roots: &[u64], (a, l): (u64, u64)) -> Vec<WalkEvent> {
    model(mode, mem, roots, a, l, Consumer::FollowIn(mem))
}

#[test]
fn bit_ranges_and_canonical_forms() {
    assert_eq!(bits(12, 51), 0x000F_FFFF_FFFF_F000);
    assert_eq!(bits(52, 51), 0);
    assert_eq!(bits(63, 63), 1 << 63);
    assert_eq!(bits(0, 63), u64::MAX);
    let m4 = Mode::X86_64 {
        la57: false,
        nxe: true,
        max_phys_bits: 52,
    };
    let m5 = Mode::X86_64 {
        la57: true,
        nxe: true,
        max_phys_bits: 52,
    };
    assert_eq!(m4.canonical(0x8880_0000_0000), 0xffff_8880_0000_0000);
    assert_eq!(m4.canonical(0xffff_8880_0000_0000), 0xffff_8880_0000_0000);
    assert_eq!(m4.canonical(0x7fff_ffff_ffff), 0x7fff_ffff_ffff);
    assert_eq!(m5.canonical(0x11_0000_0000_0000), 0x11_0000_0000_0000);
    assert_eq!(m5.canonical(0x111_0000_0000_0000), 0xff11_0000_0000_0000);
    assert!(!m4.addressable(0x8000_0000_0000));
    assert!(m5.addressable(0x8000_0000_0000));
    assert_eq!(m4.index(0xffff_8880_0000_0000, 4), 0x111);
    assert_eq!(m5.index(0xff11_0000_0000_0000, 5), 0x111);
    let pae = Mode::Pae {
        nxe: true,
        max_phys_bits: 52,
    };
    assert_eq!(pae.index(0xC000_0000, 3), 3);
    assert_eq!(pae.table_bytes(3), 32);
    assert_eq!(pae.table_bytes(2), 4096);
    assert_eq!(pae.root_table(0x1038), 0x1020);
    assert_eq!(m4.root_table((1 << 63) | 0x1005), 0x1000);
    // Ranges: empty, past 4 GiB, inside the hole, across it.
    assert_eq!(clip(pae, 0x1234, 0), None);
    assert_eq!(clip(pae, 1 << 32, 1), None);
    assert_eq!(clip(pae, 0xFFFF_FFFF, 9), Some((0xFFFF_F000, 1 << 32)));
    assert_eq!(clip(m4, 0x8000_0000_0000, 0x1000), None);
    assert_eq!(clip(m4, 0x8000_0000_0000, 0xffff_0000_0000_0000), None);
    assert_eq!(
        clip(m4, 0x8000_0000_0000, 0xffff_0000_0000_0001),
        Some((0x8000_0000_0000, 0xffff_8000_0000_0001))
    );
    assert!(clip(m5, 0x8000_0000_0000, 0x1000).is_some());
}

/// i686: a PSE-36 4 MiB page, its reserved bit 21, a page table, and PS
/// read as an address bit's neighbour when PSE is off.
#[test]
fn i686_pse_and_page_tables() {
    let on = Mode::I686 { pse: true };
    let off = Mode::I686 { pse: false };
    let mut img = Img::new(on, 0x3000);
    img.put(0x1000, 1, 0x0040_0000 | (0x12 << 13) | PS | P | RW); // 4 MiB at 0x12_0040_0000
    img.put(0x1000, 2, 0x0080_0000 | (1 << 21) | PS | P);
    img.put(0x1000, 3, 0x2000 | P | RW | US);
    img.put(0x2000, 4, 0x0010_0000 | P | US);
    let pde1 = 0x0040_0000 | (0x12 << 13) | PS | P | RW;
    let pde2 = 0x0080_0000 | (1 << 21) | PS | P;
    assert_eq!(
        refs(on, &img.buf, &[0x1000], WHOLE),
        [
            leaf(0, 0x40_0000, 0x12_0040_0000, pde1, 2, 22, W | X),
            fault(0, 0x80_0000, 2, 0x80_0000, Rsv),
            leaf(0, 0xC0_4000, 0x10_0000, 0x0010_0000 | P | US, 1, 12, U | X),
        ]
    );
    // Without PSE every PDE is a table: 0x40_0000 | (0x12 << 13) names
    // 0x42_4000 (outside memory), 0x80_0000 | bit 21 names 0xA0_0000.
    assert_eq!(
        refs(off, &img.buf, &[0x1000], WHOLE),
        [
            fault(0, 0x40_0000, 1, (pde1 & !0xFFF) & 0xFFFF_FFFF, Oob),
            fault(0, 0x80_0000, 1, pde2 & !0xFFF, Oob),
            leaf(0, 0xC0_4000, 0x10_0000, 0x0010_0000 | P | US, 1, 12, U | X),
        ]
    );
    // A root outside memory faults at VA 0, level 2.
    assert_eq!(
        refs(on, &img.buf, &[0x1000, 0x3000], (0, 0x1000)),
        [fault(1, 0, 2, 0x3000, Oob)]
    );
}

fn pae(nxe: bool, max_phys_bits: u8) -> Mode {
    Mode::Pae { nxe, max_phys_bits }
}

/// The PAE image: a PDPT at 0x1020 (not page aligned, CR3 0x1038), a PD
/// reached twice from it (at 0 and at 3 GiB), reserved PDPTE bits, a 2 MiB
/// page with NX, a reserved 2 MiB page, a page table outside memory, and
/// PTEs with NX and with a PA bit above a 36-bit MAXPHYADDR.
fn pae_image() -> Img {
    let mut img = Img::new(pae(true, 52), 0x8000);
    img.put(0x1020, 0, 0x2000 | P);
    img.put(0x1020, 1, 0x3000 | P | RW); // bit 1 is reserved in a PDPTE
    img.put(0x1020, 3, 0x2000 | P | A); // accessed is accepted
    img.put(0x2000, 0, 0x4000 | P | RW | US);
    img.put(0x2000, 1, 0x0060_0000 | P | PS | US | NX);
    img.put(0x2000, 2, 0x0080_0000 | P | PS | RW | (1 << 13));
    img.put(0x2000, 3, 0x0010_0000 | P | RW);
    img.put(0x4000, 5, 0x0050_0000 | P | RW | US);
    img.put(0x4000, 6, 0x0051_0000 | P | RW | US | NX);
    img.put(0x4000, 7, 0x0052_0000 | P | (1 << 40));
    img
}

/// The events of the PAE image's PD mapped at `base` (nxe on, MAXPHYADDR
/// 36).
fn pae_pd_events(space: u32, base: u64) -> Vec<WalkEvent> {
    vec![
        leaf(
            space,
            base + 0x5000,
            0x50_0000,
            0x0050_0000 | P | RW | US,
            1,
            12,
            ALL,
        ),
        leaf(
            space,
            base + 0x6000,
            0x51_0000,
            0x0051_0000 | P | RW | US | NX,
            1,
            12,
            W | U,
        ),
        fault(space, base + 0x7000, 1, 0x100_0052_0000, Rsv),
        leaf(
            space,
            base + 0x20_0000,
            0x60_0000,
            0x0060_0000 | P | PS | US | NX,
            2,
            21,
            U,
        ),
        fault(space, base + 0x40_0000, 2, 0x80_0000, Rsv),
        fault(space, base + 0x60_0000, 1, 0x10_0000, Oob),
    ]
}

#[test]
fn pae_root_at_a_32_byte_address_with_a_same_space_alias() {
    let img = pae_image();
    let mode = pae(true, 36);
    let mut expect = pae_pd_events(0, 0);
    expect.push(fault(0, 0x4000_0000, 3, 0x3000, Rsv));
    expect.push(alias(0, 0xC000_0000, 0, 0, 0x2000, 0x2000 | P | A, 3, 30));
    assert_eq!(refs(mode, &img.buf, &[0x1038], WHOLE), expect);

    // Followed, the alias is the PD again at 3 GiB (its page table too,
    // descended without ownership).
    let mut expect = pae_pd_events(0, 0);
    expect.push(fault(0, 0x4000_0000, 3, 0x3000, Rsv));
    expect.extend(pae_pd_events(0, 0xC000_0000));
    assert_eq!(follow(mode, &img.buf, &[0x1038], WHOLE), expect);

    // A range inside the second region only.
    assert_eq!(
        follow(mode, &img.buf, &[0x1038], (0xC000_6123, 0x1000)),
        [
            leaf(
                0,
                0xC000_6000,
                0x51_0000,
                0x0051_0000 | P | RW | US | NX,
                1,
                12,
                W | U
            ),
            fault(0, 0xC000_7000, 1, 0x100_0052_0000, Rsv),
        ]
    );
}

#[test]
fn pae_without_nxe_reserves_bit_63_and_maxphyaddr_52_maps_bit_40() {
    let img = pae_image();
    let got = refs(pae(false, 52), &img.buf, &[0x1038], (0, 0x4000_0000));
    assert_eq!(
        got,
        [
            leaf(0, 0x5000, 0x50_0000, 0x0050_0000 | P | RW | US, 1, 12, ALL),
            fault(0, 0x6000, 1, 0x51_0000, Rsv),
            leaf(
                0,
                0x7000,
                0x100_0052_0000,
                0x0052_0000 | P | (1 << 40),
                1,
                12,
                X
            ),
            fault(0, 0x20_0000, 2, 0x60_0000, Rsv),
            fault(0, 0x40_0000, 2, 0x80_0000, Rsv),
            fault(0, 0x60_0000, 1, 0x10_0000, Oob),
        ]
    );
}

#[test]
fn pae_roots_in_the_last_32_bytes_and_past_memory() {
    let mut img = pae_image();
    img.put(0x7FE0, 2, 0x2000 | P); // the same PD, from another root
    let mode = pae(true, 36);
    // CR3 0x7FF8 names the PDPT at 0x7FE0, the last 32 bytes: readable.
    let got = refs(mode, &img.buf, &[0x7FF8, 0x8000], (0x8000_0000, 0x1000));
    assert_eq!(
        got,
        [
            // Space 0: the page table under 2 GiB maps nothing at its first page.
            fault(1, 0, 3, 0x8000, Oob),
        ]
    );
    let got = refs(mode, &img.buf, &[0x1020, 0x7FE0], WHOLE);
    let mut expect = pae_pd_events(0, 0);
    expect.push(fault(0, 0x4000_0000, 3, 0x3000, Rsv));
    expect.push(alias(0, 0xC000_0000, 0, 0, 0x2000, 0x2000 | P | A, 3, 30));
    expect.push(alias(1, 0x8000_0000, 0, 0, 0x2000, 0x2000 | P, 3, 30));
    assert_eq!(got, expect);
}

fn x64(la57: bool, nxe: bool, max_phys_bits: u8) -> Mode {
    Mode::X86_64 {
        la57,
        nxe,
        max_phys_bits,
    }
}

const K: u64 = 0xffff_8880_0000_0000;

/// The 4-level image: a PML4 at 0x1000 with a reserved PS bit in one entry
/// and NX only in the upper-half entry 0x111; a 1 GiB page, a reserved
/// 1 GiB page, a PD outside memory; at `K` a 2 MiB page and a 4 KiB page.
fn x64_image() -> Img {
    let mut img = Img::new(x64(false, true, 52), 0x8000);
    img.put(0x1000, 0, 0x2000 | P | RW | US);
    img.put(0x1000, 1, 0x2000 | P | PS);
    img.put(0x1000, 0x111, 0x3000 | P | RW | NX);
    img.put(0x2000, 1, 0x4000_0000 | P | RW | PS);
    img.put(0x2000, 2, 0x8000_0000 | P | PS | (1 << 13));
    img.put(0x2000, 3, 0x10_0000_0000 | P);
    img.put(0x3000, 0, 0x5000 | P | RW | US);
    img.put(0x5000, 0, 0x20_0000 | P | RW | US | PS);
    img.put(0x5000, 1, 0x6000 | P | RW | US);
    img.put(0x6000, 0, 0x7_0000 | P | RW | US);
    img
}

#[test]
fn x86_64_one_gib_pages_nx_above_and_the_upper_half() {
    let img = x64_image();
    let mode = x64(false, true, 52);
    let cr3 = (1 << 63) | 0x1000 | 0x5; // no-flush bit and PCID 5
    let expect = [
        leaf(
            0,
            0x4000_0000,
            0x4000_0000,
            0x4000_0000 | P | RW | PS,
            3,
            30,
            W | X,
        ),
        fault(0, 0x8000_0000, 3, 0x8000_0000, Rsv),
        fault(0, 0xC000_0000, 2, 0x10_0000_0000, Oob),
        fault(0, 0x80_0000_0000, 4, 0x2000, Rsv),
        leaf(0, K, 0x20_0000, 0x20_0000 | P | RW | US | PS, 2, 21, W),
        leaf(0, K + 0x20_0000, 0x7_0000, 0x7_0000 | P | RW | US, 1, 12, W),
    ];
    assert_eq!(refs(mode, &img.buf, &[cr3], WHOLE), expect);
    assert_eq!(follow(mode, &img.buf, &[cr3], WHOLE), expect);
    // Upper-half ranges, and ranges across and inside the hole.
    assert_eq!(
        refs(mode, &img.buf, &[cr3], (K + 0x20_0000, 0x1000)),
        expect[5..]
    );
    assert_eq!(
        refs(
            mode,
            &img.buf,
            &[cr3],
            (0x7fff_ffff_f000, K + 1 - 0x7fff_ffff_f000)
        ),
        expect[4..5]
    );
    assert!(refs(mode, &img.buf, &[cr3], (0x8000_0000_0000, 0x1000)).is_empty());
    assert!(
        refs(
            mode,
            &img.buf,
            &[cr3 + 0x10_0000],
            (0x8000_0000_0000, 1 << 40)
        )
        .is_empty()
    );
    // MAXPHYADDR 36: the PD at 64 GiB is named by a reserved bit.
    let got = refs(x64(false, true, 36), &img.buf, &[cr3], (0xC000_0000, 1));
    assert_eq!(got, [fault(0, 0xC000_0000, 3, 0x10_0000_0000, Rsv)]);
    // Without NXE the upper-half entry is reserved where it sits.
    let got = refs(x64(false, false, 52), &img.buf, &[cr3], (K, 1));
    assert_eq!(got, [fault(0, K, 4, 0x3000, Rsv)]);
    // A root outside memory: one fault at VA 0.
    assert_eq!(
        refs(mode, &img.buf, &[0x8000], (K, 1)),
        [fault(0, 0, 4, 0x8000, Oob)]
    );
}

#[test]
fn la57_upper_half_va() {
    let mode = x64(true, true, 52);
    let mut img = Img::new(mode, 0x4000);
    img.put(0x1000, 0x111, 0x2000 | P | RW);
    img.put(0x2000, 0, 0x3000 | P | RW | US);
    img.put(0x2000, 1, 0x3000 | P | PS); // PML4E bit 7 is reserved in 5-level paging too
    img.put(0x3000, 0, 0x4000_0000 | P | RW | US | PS);
    let va = 0xff11_0000_0000_0000;
    let expect = [
        leaf(
            0,
            va,
            0x4000_0000,
            0x4000_0000 | P | RW | US | PS,
            3,
            30,
            W | X,
        ),
        fault(0, va + (1 << 39), 4, 0x3000, Rsv),
    ];
    assert_eq!(refs(mode, &img.buf, &[0x1000], WHOLE), expect);
    assert_eq!(
        refs(mode, &img.buf, &[0x1000], (va + 0x1234, 1)),
        expect[..1]
    );
    // The same memory in 4-level paging: the PML5 is a PML4, the upper
    // entry 0x111 maps K, the PML4 below it is a PDPT whose entry 1 is a
    // reserved 1 GiB page (bit 13 of 0x3000), entry 0 a PD of 2 MiB pages.
    let got = refs(x64(false, true, 52), &img.buf, &[0x1000], WHOLE);
    assert_eq!(
        got,
        [
            leaf(
                0,
                K,
                0x4000_0000,
                0x4000_0000 | P | RW | US | PS,
                2,
                21,
                W | X
            ),
            fault(0, K + (1 << 30), 3, 0, Rsv),
        ]
    );
}

const U0: u64 = 0xffff_8000_0000_0000;
const G: u64 = 1 << 30;

/// Two spaces sharing a PDPT (`K` at 0x3000) from PML4 entry 256; in the
/// PDPT two entries reach one PD (0x4000), whose PT (0x5000) maps one
/// page. Space 1's entry lacks US.
fn shared_image() -> Img {
    let mut img = Img::new(x64(false, true, 52), 0x6000);
    img.put(0x1000, 256, 0x3000 | P | RW | US);
    img.put(0x2000, 256, 0x3000 | P | RW);
    img.put(0x3000, 0, 0x4000 | P | RW | US);
    img.put(0x3000, 1, 0x4000 | P | RW | US);
    img.put(0x4000, 0, 0x5000 | P | RW | US);
    img.put(0x5000, 0, 0x10_0000 | P | RW | US);
    img
}

#[test]
fn x86_64_sharing_at_two_levels_references_and_follow() {
    let img = shared_image();
    let mode = x64(false, true, 52);
    let roots = [0x1000, 0x2000];
    let pte = 0x10_0000 | P | RW | US;
    assert_eq!(
        refs(mode, &img.buf, &roots, WHOLE),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, ALL),
            alias(0, U0 + G, 0, U0, 0x4000, 0x4000 | P | RW | US, 3, 30),
            alias(1, U0, 0, U0, 0x3000, 0x3000 | P | RW, 4, 39),
        ]
    );
    assert_eq!(
        follow(mode, &img.buf, &roots, WHOLE),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, ALL),
            leaf(0, U0 + G, 0x10_0000, pte, 1, 12, ALL),
            // Our path: space 1's entry has no US.
            leaf(1, U0, 0x10_0000, pte, 1, 12, W | X),
            leaf(1, U0 + G, 0x10_0000, pte, 1, 12, W | X),
        ]
    );
    // The second space alone owns its tables: no alias at level 4.
    assert_eq!(
        refs(mode, &img.buf, &roots[1..], WHOLE),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, W | X),
            alias(0, U0 + G, 0, U0, 0x4000, 0x4000 | P | RW | US, 3, 30),
        ]
    );
}

#[test]
fn x86_64_follow_in_edited_memory() {
    let img = shared_image();
    let mode = x64(false, true, 52);
    let roots = [0x1000, 0x2000];
    let pte = 0x10_0000 | P | RW | US;
    let follow_in = |edited: &[u8]| {
        model(
            mode,
            &img.buf,
            &roots,
            0,
            u64::MAX,
            Consumer::FollowIn(edited),
        )
    };

    // The owner unmapped its PML4 entry: both aliases resolve to nothing.
    let mut edited = shared_image();
    edited.put(0x1000, 256, 0);
    assert_eq!(
        follow_in(&edited.buf),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, ALL),
            invalid(0, U0 + G, 3, 30),
            invalid(1, U0, 4, 39),
        ]
    );

    // The owner's root is gone from the follow memory.
    assert_eq!(
        follow_in(&img.buf[..0x1000]),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, ALL),
            fault(0, U0 + G, 4, 0x1000, Oob),
            fault(1, U0, 4, 0x1000, Oob),
        ]
    );

    // The owner's PDPT entry 0 now names a PD outside the follow memory:
    // space 0's alias resolves to it and faults at level 2; space 1
    // descends the PDPT in the follow memory, faults at entry 0 and reads
    // entry 1's PD.
    let mut edited = shared_image();
    edited.put(0x3000, 0, 0x9_0000 | P | RW | US);
    assert_eq!(
        follow_in(&edited.buf),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, ALL),
            fault(0, U0 + G, 2, 0x9_0000, Oob),
            fault(1, U0, 2, 0x9_0000, Oob),
            leaf(1, U0 + G, 0x10_0000, pte, 1, 12, W | X),
        ]
    );

    // The owner's PD entry became a 2 MiB page: space 0's alias at level 3
    // still resolves to the PD, whose entry 0 now maps 2 MiB (read in the
    // follow memory under our path).
    let mut edited = shared_image();
    edited.put(0x4000, 0, 0x20_0000 | P | RW | PS);
    let big = 0x20_0000 | P | RW | PS;
    assert_eq!(
        follow_in(&edited.buf),
        [
            leaf(0, U0, 0x10_0000, pte, 1, 12, ALL),
            leaf(0, U0 + G, 0x20_0000, big, 2, 21, W | X),
            leaf(1, U0, 0x20_0000, big, 2, 21, W | X),
            leaf(1, U0 + G, 0x20_0000, big, 2, 21, W | X),
        ]
    );
}

#[test]
fn resolution_and_path_access() {
    let img = shared_image();
    let mode = x64(false, true, 52);
    assert_eq!(
        resolve(mode, &img.buf, 0x1000, U0, 4),
        Resolved::Table(0x3000)
    );
    assert_eq!(
        resolve(mode, &img.buf, 0x1000, U0 + G, 3),
        Resolved::Table(0x4000)
    );
    assert_eq!(
        resolve(mode, &img.buf, 0x1000, U0, 2),
        Resolved::Table(0x5000)
    );
    assert_eq!(resolve(mode, &img.buf, 0x1000, U0, 1), Resolved::Invalid);
    assert_eq!(resolve(mode, &img.buf, 0x1000, 0, 4), Resolved::Invalid);
    assert_eq!(
        resolve(mode, &img.buf, 0x1000, U0 + 2 * G, 2),
        Resolved::Invalid
    );
    assert_eq!(
        resolve(mode, &img.buf, 0x9000, U0, 4),
        Resolved::Unreadable(4, 0x9000)
    );
    assert_eq!(access_to(mode, &img.buf, 0x2000, U0, 4), Some(W | X));
    assert_eq!(access_to(mode, &img.buf, 0x2000, U0 + G, 3), Some(W | X));
    assert_eq!(access_to(mode, &img.buf, 0x1000, U0 + G, 3), Some(ALL));
    assert_eq!(access_to(mode, &img.buf, 0x1000, 0, 4), None);
    let got = descend_resolved(mode, &img.buf, 1, 0x4000, 2, U0 + G, W | X, 0, u64::MAX);
    assert_eq!(
        got,
        [leaf(
            1,
            U0 + G,
            0x10_0000,
            0x10_0000 | P | RW | US,
            1,
            12,
            W | X
        )]
    );
}
