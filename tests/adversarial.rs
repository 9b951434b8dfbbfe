//! Adversarial page tables, i686: each test builds one hostile shape by
//! hand and states the whole event stream a walk must produce, for the
//! references consumer and the follow consumer, through both `next` and
//! `fold`. Where the memory is a plain slice the reference model
//! (tests/common) must agree as well.
//!
//! The rules these streams follow are in docs/DESIGN.md: ownership is keyed
//! by (physical address, level), so a page reached at another level is a
//! different table; a table outside memory is a fault at every reach; the
//! descent depth is fixed by the mode, so no shape can loop the walk.

mod common;

use common::{Consumer, ImageBuilder, P, PDE_FLAGS, PS, RW, US, model};
use ptwalk::{
    Access, Aliasing, Fault, FaultReason, I686, Image, Invalid, Leaf, Level, OwnerIndex, OwnerSlot,
    PhysAddr, PhysMem, Regions, SpaceId, Spaces, Translation, VirtAddr, Walk, WalkEvent, WalkExt,
    virt_to_phys,
};

// ---------------------------------------------------------------------------
// Expected events, spelled out.

/// A 4 KiB page: `entry` is the PTE, `access` the effective access.
fn leaf4k(space: u32, va: u64, pa: u64, entry: u32, access: Access) -> WalkEvent {
    WalkEvent::Leaf(Leaf {
        space: SpaceId(space),
        va: VirtAddr(va),
        pa: PhysAddr(pa),
        entry: entry.into(),
        level: Level(1),
        size_log2: 12,
        access,
    })
}

/// A 4 MiB page mapped by directory entry `entry`.
fn page4m(space: u32, va: u64, pa: u64, entry: u32, access: Access) -> WalkEvent {
    WalkEvent::Leaf(Leaf {
        space: SpaceId(space),
        va: VirtAddr(va),
        pa: PhysAddr(pa),
        entry: entry.into(),
        level: Level(2),
        size_log2: 22,
        access,
    })
}

/// Directory entry `entry` of `space` at `va` reaching `table`, owned by
/// (`owner`, `owner_va`).
fn alias(space: u32, va: u64, owner: u32, owner_va: u64, table: u64, entry: u32) -> WalkEvent {
    WalkEvent::Aliasing(Aliasing {
        space: SpaceId(space),
        va: VirtAddr(va),
        owner: SpaceId(owner),
        owner_va: VirtAddr(owner_va),
        table: PhysAddr(table),
        entry: entry.into(),
        level: Level(2),
        size_log2: 22,
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

fn invalid(space: u32, va: u64) -> WalkEvent {
    WalkEvent::Invalid(Invalid {
        space: SpaceId(space),
        va: VirtAddr(va),
        level: Level(2),
        size_log2: 22,
    })
}

const OOB: FaultReason = FaultReason::OutOfBounds;
// 32-bit paging has no NX: every i686 page is executable.
const ALL: Access = Access::ALL;
const WRITABLE: Access = Access::from_bits(Access::WRITABLE.bits() | Access::EXECUTE.bits());
const USER: Access = Access::from_bits(Access::USER.bits() | Access::EXECUTE.bits());
const NONE: Access = Access::EXECUTE;

// ---------------------------------------------------------------------------
// Walking, every way.

fn by_next<I: Iterator<Item = WalkEvent>>(mut it: I) -> Vec<WalkEvent> {
    let mut v = Vec::new();
    #[allow(clippy::while_let_on_iterator)]
    while let Some(e) = it.next() {
        v.push(e);
    }
    assert_eq!(it.next(), None, "fused");
    v
}

fn by_fold<I: Iterator<Item = WalkEvent>>(it: I) -> Vec<WalkEvent> {
    it.fold(Vec::new(), |mut v, e| {
        v.push(e);
        v
    })
}

/// A walk over `roots` in `mem`, the whole address space.
#[derive(Clone, Copy)]
struct Case<'a, M: ?Sized> {
    mem: &'a M,
    roots: &'a [PhysAddr],
    mode: I686,
    slots: usize,
    range: (u64, u64),
}

fn case<'a, M: PhysMem + ?Sized>(mem: &'a M, roots: &'a [PhysAddr]) -> Case<'a, M> {
    Case {
        mem,
        roots,
        mode: I686::default(),
        slots: 64,
        range: (0, u64::MAX),
    }
}

impl<'a, M: PhysMem + ?Sized> Case<'a, M> {
    fn mode(self, mode: I686) -> Self {
        Case { mode, ..self }
    }
    fn slots(self, slots: usize) -> Self {
        Case { slots, ..self }
    }
    fn range(self, address: u64, len: u64) -> Self {
        Case {
            range: (address, len),
            ..self
        }
    }

    fn walk(&self) -> Walk<'a, I686, M> {
        Walk::new(self.mem, self.roots)
            .unwrap()
            .with_mode(self.mode)
            .range(self.range.0, self.range.1)
    }

    fn index(&self) -> OwnerIndex<Vec<OwnerSlot>> {
        OwnerIndex::new(vec![OwnerSlot::EMPTY; self.slots])
    }

    /// The references stream (`next` and `fold` agree).
    fn refs(&self) -> Vec<WalkEvent> {
        let walk = || self.walk().with_owners(self.index()).references();
        let next = by_next(walk());
        assert_eq!(next, by_fold(walk()), "references: next and fold differ");
        next
    }

    /// The follow stream (`next` and `fold` agree).
    fn follow(&self) -> Vec<WalkEvent> {
        let walk = || self.walk().with_owners(self.index()).follow_aliases();
        let next = by_next(walk());
        assert_eq!(next, by_fold(walk()), "follow: next and fold differ");
        next
    }

    /// The follow stream, which a walk without an owner index (every table
    /// descended as the hardware would) must reproduce.
    fn follow_as_hardware(&self) -> Vec<WalkEvent> {
        let f = self.follow();
        assert_eq!(f, by_fold(self.walk()), "follow differs from a plain walk");
        f
    }
}

impl Case<'_, [u8]> {
    /// Checks both streams against the reference model too.
    fn modelled(&self) -> (Vec<WalkEvent>, Vec<WalkEvent>) {
        let roots: Vec<u64> = self.roots.iter().map(|r| r.0).collect();
        let (address, len) = self.range;
        let m = |c| model(self.mem, &roots, self.mode.pse, address, len, c);
        let refs = self.refs();
        assert_eq!(refs, m(Consumer::References), "model, references");
        let follow = self.follow_as_hardware();
        assert_eq!(follow, m(Consumer::FollowIn(self.mem)), "model, follow");
        (refs, follow)
    }
}

fn roots(pas: &[u32]) -> Vec<PhysAddr> {
    pas.iter().map(|&r| PhysAddr(r.into())).collect()
}

fn translate<M: PhysMem + ?Sized>(mem: &M, roots: &[PhysAddr], space: u32, va: u64) -> Translation {
    Spaces::new(mem, roots)
        .unwrap()
        .translate(SpaceId(space), VirtAddr(va))
        .unwrap()
}

// ---------------------------------------------------------------------------
// Self-reference and cross-reference.

/// Each space maps its own directory at its last directory entry (the
/// recursive "self-map" of many kernels) and shares a kernel page table.
/// A directory reached from itself is a page table there: keyed by level,
/// it is a new table (not an alias of the root), and its entries show up
/// as 4 KiB leaves over the directory's own page.
#[test]
fn a_self_mapped_directory_is_its_own_page_table_one_level_down() {
    let mut img = ImageBuilder::new();
    let (a, b, k) = (img.alloc(), img.alloc(), img.alloc()); // 0x1000, 0x2000, 0x3000
    for d in [a, b] {
        img.put(d, 0x300, k | PDE_FLAGS);
        img.put(d, 0x3FF, d | P | RW);
    }
    img.put(k, 0, 0x0010_0000 | P | RW);
    let roots = roots(&[a, b]);
    let (refs, follow) = case(&img.buf[..], &roots).modelled();

    let kernel = |s| leaf4k(s, 0xC000_0000, 0x10_0000, 0x0010_0003, WRITABLE);
    let own_dir = |s: u32, d: u32| {
        [
            leaf4k(s, 0xFFF0_0000, 0x3000, 0x3027, WRITABLE),
            leaf4k(s, 0xFFFF_F000, d.into(), d | P | RW, WRITABLE),
        ]
    };
    let mut expect = vec![kernel(0)];
    expect.extend(own_dir(0, a));
    expect.push(alias(1, 0xC000_0000, 0, 0xC000_0000, 0x3000, 0x3027));
    expect.extend(own_dir(1, b));
    assert_eq!(refs, expect);

    expect[3] = kernel(1);
    assert_eq!(follow, expect);

    // Through the self-map a space reads its own directory entries: the
    // kernel entry (0x300) of space 1 is at 0xFFFF_FC00.
    let Translation::Mapped(l) = translate(&img.buf[..], &roots, 1, 0xFFFF_FC00) else {
        panic!()
    };
    assert_eq!(
        l.translate(VirtAddr(0xFFFF_FC00)),
        Some(PhysAddr(u64::from(b) + 0x300 * 4))
    );
}

/// Space 1 points a directory entry at space 0's directory (and space 0
/// at space 1's): each is read as a page table by the other. Roots are
/// never owned, so neither space loses its own walk, and no alias appears.
#[test]
fn a_directory_of_one_space_is_a_page_table_in_another() {
    let mut img = ImageBuilder::new();
    let (a, b, t) = (img.alloc(), img.alloc(), img.alloc()); // 0x1000, 0x2000, 0x3000
    img.put(a, 0, t | PDE_FLAGS);
    img.put(t, 1, 0x7000 | P | RW | US);
    img.put(a, 3, b | P | RW); // space 0 reads B, kernel-only writable
    img.put(b, 2, a | P | US); // space 1 reads A, user read-only
    let roots = roots(&[a, b]);
    let (refs, follow) = case(&img.buf[..], &roots).modelled();
    let expect = [
        leaf4k(0, 0x1000, 0x7000, 0x7007, ALL),
        // B as a page table at 0x00C0_0000: its entry 2 is a leaf.
        leaf4k(0, 0x00C0_2000, 0x1000, 0x1005, NONE),
        // Space 1's own walk of B: entry 2 is A as a page table.
        leaf4k(1, 0x0080_0000, 0x3000, 0x3027, USER),
        leaf4k(1, 0x0080_3000, 0x2000, 0x2003, NONE),
    ];
    assert_eq!(refs, expect);
    assert_eq!(follow, expect);
}

/// Every one of the 1024 directory entries points at the same page table:
/// the first owns it, the other 1023 are aliases of it (same space, other
/// VAs), and followed they are 1024 views of its one leaf.
#[test]
fn every_directory_entry_at_one_table_is_one_owner_and_1023_aliases() {
    let mut img = ImageBuilder::new();
    let (a, t) = (img.alloc(), img.alloc()); // 0x1000, 0x2000
    for i in 0..1024 {
        img.put(a, i, t | PDE_FLAGS);
    }
    img.put(t, 5, 0x9000 | P | RW);
    let roots = roots(&[a]);
    // One slot is enough: there is one table.
    let c = case(&img.buf[..], &roots).slots(1);
    let mut expect = vec![leaf4k(0, 0x5000, 0x9000, 0x9003, WRITABLE)];
    expect.extend((1..1024).map(|i| alias(0, i << 22, 0, 0, 0x2000, 0x2027)));
    assert_eq!(c.refs(), expect);
    let views: Vec<_> = (0..1024)
        .map(|i| leaf4k(0, (i << 22) + 0x5000, 0x9000, 0x9003, WRITABLE))
        .collect();
    assert_eq!(c.follow_as_hardware(), views);
    assert_eq!(case(&img.buf[..], &roots).modelled().1, views);
    assert_eq!(
        c.walk().coalesce().count(),
        1024,
        "no two views are contiguous"
    );
}

/// Every directory entry points at the directory itself: read one level
/// down, the directory maps itself 1024 times over, 2^20 leaves in all.
/// The descent depth is fixed, so the walk ends.
#[test]
fn a_directory_whose_every_entry_is_itself_maps_a_million_pages_and_ends() {
    let mut img = ImageBuilder::new();
    let a = img.alloc();
    for i in 0..1024 {
        img.put(a, i, a | PDE_FLAGS);
    }
    let roots = roots(&[a]);
    let c = case(&img.buf[..], &roots).slots(1);
    let mut expect: Vec<_> = (0..1024)
        .map(|j| leaf4k(0, j << 12, 0x1000, 0x1027, ALL))
        .collect();
    expect.extend((1..1024).map(|i| alias(0, i << 22, 0, 0, 0x1000, 0x1027)));
    assert_eq!(c.refs(), expect);
    let follow = c.follow_as_hardware();
    assert_eq!(follow.len(), 1 << 20);
    assert!(
        follow
            .iter()
            .zip(0u64..)
            .all(|(e, n)| *e == leaf4k(0, n << 12, 0x1000, 0x1027, ALL))
    );
}

/// Two spaces whose tables point into each other's directories: space 0
/// reads B as a page table (twice: once it owns it, once as an alias of
/// itself), space 1 reads A as a page table and reaches B too, an alias
/// of space 0's. Followed, every alias shows B's entries under the
/// aliasing entry's own access.
#[test]
fn two_spaces_pointing_into_each_others_directories() {
    let mut img = ImageBuilder::new();
    let (a, b) = (img.alloc(), img.alloc()); // 0x1000, 0x2000
    img.put(a, 0, b | PDE_FLAGS);
    img.put(a, 1, b | P); // read-only, kernel
    img.put(b, 0, a | PDE_FLAGS);
    img.put(b, 1, b | PDE_FLAGS);
    let roots = roots(&[a, b]);
    let (refs, follow) = case(&img.buf[..], &roots).modelled();
    assert_eq!(
        refs,
        [
            leaf4k(0, 0x0000, 0x1000, 0x1027, ALL),
            leaf4k(0, 0x1000, 0x2000, 0x2027, ALL),
            alias(0, 0x40_0000, 0, 0, 0x2000, 0x2001),
            leaf4k(1, 0x0000, 0x2000, 0x2027, ALL),
            leaf4k(1, 0x1000, 0x2000, 0x2001, NONE),
            alias(1, 0x40_0000, 0, 0, 0x2000, 0x2027),
        ]
    );
    assert_eq!(
        follow,
        [
            leaf4k(0, 0x0000, 0x1000, 0x1027, ALL),
            leaf4k(0, 0x1000, 0x2000, 0x2027, ALL),
            leaf4k(0, 0x40_0000, 0x1000, 0x1027, NONE),
            leaf4k(0, 0x40_1000, 0x2000, 0x2027, NONE),
            leaf4k(1, 0x0000, 0x2000, 0x2027, ALL),
            leaf4k(1, 0x1000, 0x2000, 0x2001, NONE),
            leaf4k(1, 0x40_0000, 0x1000, 0x1027, ALL),
            leaf4k(1, 0x40_1000, 0x2000, 0x2027, ALL),
        ]
    );
}

// ---------------------------------------------------------------------------
// The edges of memory.

/// A directory at physical address 0 (also read as a page table by its
/// own entry 1, whose address field is 0) and a page table in the last
/// page of memory. Address 0 is an address like any other: it is owned,
/// aliased and resolved.
#[test]
fn tables_at_pa_0_and_in_the_last_page_of_memory() {
    let mut mem = vec![0u8; 0x3000];
    let mut put = |pa: usize, v: u32| mem[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
    // Space 0: root at 0. Entry 0 -> page table in the last page, 0x2000.
    put(0, 0x2000 | PDE_FLAGS);
    put(4, P | RW | US); // entry 1 -> the table at 0: the root itself
    put(0x2000, P); // frame 0, read-only
    put(0x2000 + 0x3FF * 4, 0x2000 | P | RW);
    // Space 1: root at 0x1000, reaching both tables.
    put(0x1000 + 4, P);
    put(0x1000 + 8, 0x2000 | P | US);
    let roots = roots(&[0, 0x1000]);
    let (refs, follow) = case(&mem[..], &roots).modelled();
    let space0 = [
        leaf4k(0, 0, 0, P, NONE),
        leaf4k(0, 0x3F_F000, 0x2000, 0x2003, WRITABLE),
        leaf4k(0, 0x40_0000, 0x2000, 0x2027, ALL),
        leaf4k(0, 0x40_1000, 0, 0x7, ALL),
    ];
    let mut expect = space0.to_vec();
    expect.push(alias(1, 0x40_0000, 0, 0x40_0000, 0, P));
    expect.push(alias(1, 0x80_0000, 0, 0, 0x2000, 0x2005));
    assert_eq!(refs, expect);
    let mut expect = space0.to_vec();
    expect.extend([
        leaf4k(1, 0x40_0000, 0x2000, 0x2027, NONE),
        leaf4k(1, 0x40_1000, 0, 0x7, NONE),
        leaf4k(1, 0x80_0000, 0, P, NONE),
        leaf4k(1, 0xBF_F000, 0x2000, 0x2003, NONE),
    ]);
    assert_eq!(follow, expect);
    // An index with room for exactly the two tables still tells the table
    // at 0 from an empty slot.
    let tiny = case(&mem[..], &roots).slots(2).refs();
    assert_eq!(tiny, refs);
}

/// Memory that ends at 4 GiB, with the directory and page table in its
/// last two pages (the page table is the very last page of 32-bit
/// physical space), and a root in the last page of 64-bit physical space.
#[test]
fn tables_in_the_last_pages_of_the_physical_address_space() {
    let mut bytes = vec![0u8; 0x2000];
    bytes[0x3FF * 4..][..4].copy_from_slice(&(0xFFFF_F000 | PDE_FLAGS).to_le_bytes());
    bytes[0x1000 + 0x3FF * 4..][..4].copy_from_slice(&(0xFFFF_F000 | P | RW).to_le_bytes());
    let top = Image::new(PhysAddr(0xFFFF_E000), bytes);
    let r = [PhysAddr(0xFFFF_E000)];
    let expect = [leaf4k(0, 0xFFFF_F000, 0xFFFF_F000, 0xFFFF_F003, WRITABLE)];
    assert_eq!(case(&top, &r).refs(), expect);
    assert_eq!(case(&top, &r).follow_as_hardware(), expect);

    let mut bytes = vec![0u8; 0x1000];
    bytes[..4].copy_from_slice(&(0x5000 | PDE_FLAGS).to_le_bytes());
    let last = Image::new(PhysAddr(0xFFFF_FFFF_FFFF_F000), bytes);
    let r = [PhysAddr(0xFFFF_FFFF_FFFF_F000)];
    let expect = [fault(0, 0, 1, 0x5000, OOB)];
    assert_eq!(case(&last, &r).refs(), expect);
    assert_eq!(case(&last, &r).follow_as_hardware(), expect);
}

/// Memory ends in the middle of a page table: the table cannot be read,
/// so each entry reaching it faults (it is never owned, never aliased),
/// and nothing of its readable half is reported. Roots across or past the
/// end fault at level 2 and the walk goes on.
#[test]
fn a_table_straddling_the_end_of_memory_faults_at_every_reach() {
    let mut img = ImageBuilder::new();
    let (a, t) = (img.alloc(), img.alloc()); // 0x1000, 0x2000
    img.put(a, 0, t | PDE_FLAGS);
    img.put(a, 1, t | PDE_FLAGS);
    img.put(t, 0, 0x0050_0000 | P | RW); // in the readable half
    img.buf.truncate(0x2800);
    let roots = roots(&[a, t, 0x3000]);
    let expect = [
        fault(0, 0, 1, 0x2000, OOB),
        fault(0, 0x40_0000, 1, 0x2000, OOB),
        fault(1, 0, 2, 0x2000, OOB),
        fault(2, 0, 2, 0x3000, OOB),
    ];
    let (refs, follow) = case(&img.buf[..], &roots).modelled();
    assert_eq!(refs, expect);
    assert_eq!(follow, expect);
    let Translation::Fault(f) = translate(&img.buf[..], &roots, 0, 0x123) else {
        panic!()
    };
    assert_eq!(WalkEvent::Fault(f), expect[0]);
}

/// Memory in three regions: low [0, 0x3800), then a hole, then
/// [0x5000, 0x6800) and, adjacent to it, [0x6800, 0x8000). A table in a
/// region is read; a table running from a region into the hole, or wholly
/// in the hole, is out of bounds; a table across the two adjacent regions
/// is a split (it exists, but cannot be lent as one slice).
#[test]
fn a_hole_between_memory_regions_faults_and_a_seam_splits() {
    let mut flat = vec![0u8; 0x8000];
    let mut put = |pa: usize, v: u32| flat[pa..pa + 4].copy_from_slice(&v.to_le_bytes());
    put(0x1000, 0x5000 | PDE_FLAGS); // in the middle region
    put(0x1004, 0x3000 | PDE_FLAGS); // from the low region into the hole
    put(0x1008, 0x4000 | PDE_FLAGS); // in the hole
    put(0x100C, 0x6000 | PDE_FLAGS); // across the seam
    put(0x1010, 0x7000 | PDE_FLAGS); // in the last region
    put(0x5000, 0x0123_4000 | P | RW);
    put(0x7000 + 0x3FF * 4, 0x0567_8000 | P | RW | US);
    let images = [
        Image::new(PhysAddr(0), &flat[..0x3800]),
        Image::new(PhysAddr(0x5000), &flat[0x5000..0x6800]),
        Image::new(PhysAddr(0x6800), &flat[0x6800..]),
    ];
    let mem = Regions::new(&images).unwrap();
    // Space 1's root is in the hole; space 2's root is the page table at
    // 0x5000, whose entry 0 read as a directory entry points outside.
    let roots = roots(&[0x1000, 0x4000, 0x5000]);
    let expect = [
        leaf4k(0, 0x0000, 0x0123_4000, 0x0123_4003, WRITABLE),
        fault(0, 0x40_0000, 1, 0x3000, OOB),
        fault(0, 0x80_0000, 1, 0x4000, OOB),
        fault(0, 0xC0_0000, 1, 0x6000, FaultReason::Split),
        leaf4k(0, 0x013F_F000, 0x0567_8000, 0x0567_8007, ALL),
        fault(1, 0, 2, 0x4000, OOB),
        fault(2, 0, 1, 0x0123_4000, OOB),
    ];
    assert_eq!(case(&mem, &roots).refs(), expect);
    assert_eq!(case(&mem, &roots).follow_as_hardware(), expect);
}

// ---------------------------------------------------------------------------
// Reserved and reinterpreted bits.

/// 32-bit paging has reserved bits only in a directory entry that maps a
/// 4 MiB page (Intel SDM vol. 3A, 4.3): every other bit of a PTE or of a
/// directory entry pointing at a page table is meaning or ignored, never
/// reserved. Such entries, with every low bit set, still map.
#[test]
fn no_bit_of_a_pte_or_a_page_table_pde_is_reserved() {
    let mut img = ImageBuilder::new();
    let (a, t) = (img.alloc(), img.alloc());
    img.put(a, 0, t | (0xFFF & !PS)); // D, G (ignored here) and AVL set
    img.put(t, 0, 0x0070_0000 | 0xFFF); // PAT, G, AVL set
    let roots = roots(&[a]);
    let expect = [leaf4k(0, 0, 0x70_0000, 0x0070_0FFF, ALL)];
    let (refs, follow) = case(&img.buf[..], &roots).modelled();
    assert_eq!(
        (refs.as_slice(), follow.as_slice()),
        (&expect[..], &expect[..])
    );
    // PSE off: PS is ignored too, so even bit 7 set keeps a page table.
    img.put(a, 0, t | 0xFFF);
    let no_pse = case(&img.buf[..], &roots).mode(I686 { pse: false });
    let (refs, follow) = no_pse.modelled();
    assert_eq!(
        (refs.as_slice(), follow.as_slice()),
        (&expect[..], &expect[..])
    );
}

/// PSE-36: bits 13..=20 of a 4 MiB directory entry are physical-address
/// bits 32..=39, all eight of them (the crate assumes a 40-bit physical
/// address width, the PSE-36 maximum).
#[test]
fn pse36_bits_extend_a_4mib_page_to_40_bits() {
    let mut img = ImageBuilder::new();
    let a = img.alloc();
    img.put(a, 2, 0xFFC0_0000 | (0xFF << 13) | PS | P);
    img.put(a, 3, 0x0040_0000 | (0x01 << 13) | PS | P | RW | US);
    let roots = roots(&[a]);
    let expect = [
        page4m(0, 0x80_0000, 0xFF_FFC0_0000, 0xFFDF_E081, NONE),
        page4m(0, 0xC0_0000, 0x1_0040_0000, 0x0040_2087, ALL),
    ];
    let (refs, follow) = case(&img.buf[..], &roots).modelled();
    assert_eq!(
        (refs.as_slice(), follow.as_slice()),
        (&expect[..], &expect[..])
    );
}

/// With PSE off the PS bit means nothing, and the PSE-36 bits are plain
/// page-table address bits: the same entries that map 4 MiB pages with
/// PSE on point at page tables (one in memory, one outside it). A second
/// space reaching the same table is then an alias, resolved under the
/// same mode.
#[test]
fn pse36_bits_with_pse_off_are_page_table_address_bits() {
    let mut img = ImageBuilder::new();
    let (a, t, b) = (img.alloc(), img.alloc(), img.alloc()); // 0x1000, 0x2000, 0x3000
    let low = (1 << 13) | PS | P | RW; // 0x2083: PSE-36 bit 13 set
    let high = 0xFFC0_0000 | (0xFF << 13) | PS | P;
    img.put(a, 1, low);
    img.put(a, 2, high);
    img.put(b, 1, low);
    img.put(t, 0, 0x5000 | P | RW | US);
    assert_eq!(t, 0x2000);
    let roots = roots(&[a, b]);

    let pse = case(&img.buf[..], &roots);
    let expect = [
        page4m(0, 0x40_0000, 0x1_0000_0000, low, WRITABLE),
        page4m(0, 0x80_0000, 0xFF_FFC0_0000, high, NONE),
        page4m(1, 0x40_0000, 0x1_0000_0000, low, WRITABLE),
    ];
    let (refs, follow) = pse.modelled();
    assert_eq!(
        (refs.as_slice(), follow.as_slice()),
        (&expect[..], &expect[..])
    );

    let no_pse = case(&img.buf[..], &roots).mode(I686 { pse: false });
    let (refs, follow) = no_pse.modelled();
    assert_eq!(
        refs,
        [
            leaf4k(0, 0x40_0000, 0x5000, 0x5007, WRITABLE),
            fault(0, 0x80_0000, 1, 0xFFDF_E000, OOB),
            alias(1, 0x40_0000, 0, 0x40_0000, 0x2000, low),
        ]
    );
    assert_eq!(
        follow,
        [
            leaf4k(0, 0x40_0000, 0x5000, 0x5007, WRITABLE),
            fault(0, 0x80_0000, 1, 0xFFDF_E000, OOB),
            leaf4k(1, 0x40_0000, 0x5000, 0x5007, WRITABLE),
        ]
    );
}

/// Bit 21 of a directory entry mapping a 4 MiB page is reserved (Intel
/// SDM vol. 3A, 4.3 and table 4-4: with a 40-bit physical address width
/// it is the only reserved bit of 32-bit paging). An entry that sets a
/// reserved bit "is used neither to reference another paging-structure
/// entry nor to map a page": the hardware raises a page fault, so the
/// region translates nothing. QEMU does the same (`rsvd_mask = 0x200000`).
/// With PSE off the bit is a page-table address bit like any other.
#[test]
fn a_4mib_pde_with_reserved_bit_21_maps_nothing() {
    let mut img = ImageBuilder::new();
    let (a, b) = (img.alloc(), img.alloc());
    let reserved = 0x0040_0000 | (1 << 21) | PS | P | RW;
    let good = 0x0080_0000 | PS | P | RW;
    img.put(a, 1, reserved);
    img.put(a, 2, good);
    let roots = roots(&[a, b]);
    let c = case(&img.buf[..], &roots);
    // The reserved entry is reported (as the CPU's page fault would be),
    // and maps nothing.
    let expect = [
        fault(0, 0x40_0000, 2, 0x40_0000, FaultReason::Reserved),
        page4m(0, 0x80_0000, 0x80_0000, good, WRITABLE),
    ];
    assert_eq!(c.refs(), expect);
    assert_eq!(c.follow_as_hardware(), expect);
    assert!(matches!(
        translate(&img.buf[..], &roots, 0, 0x40_0123),
        Translation::Fault(f) if f.reason == FaultReason::Reserved && f.va.0 == 0x40_0000
    ));
}

/// CR3 in 32-bit paging holds the directory's address in bits 31:12 and
/// the PWT and PCD flags in bits 3 and 4 (Intel SDM vol. 3A, table 4-3);
/// docs/DESIGN.md promises a root may be given as CR3 holds it. A root
/// with those flags set walks the directory at bits 31:12.
#[test]
fn a_root_given_as_cr3_with_pwt_and_pcd_walks_its_directory() {
    let mut img = ImageBuilder::new();
    let (a, t) = (img.alloc(), img.alloc());
    img.put(a, 0, t | PDE_FLAGS);
    img.put(t, 0, 0x0010_0000 | P | RW);
    let cr3 = roots(&[a | 0x18]);
    let expect = [leaf4k(0, 0, 0x10_0000, 0x0010_0003, WRITABLE)];
    assert_eq!(case(&img.buf[..], &cr3).refs(), expect);
    assert_eq!(case(&img.buf[..], &cr3).follow_as_hardware(), expect);
    assert!(matches!(
        translate(&img.buf[..], &cr3, 0, 0x123),
        Translation::Mapped(l) if l.pa.0 == 0x10_0000
    ));
    // The same directory given twice (with and without the flags) is a
    // duplicate root.
    let twice = roots(&[a, a | 0x18]);
    assert!(matches!(
        Walk::new(&img.buf[..], &twice),
        Err(ptwalk::WalkError::DuplicateRoot {
            first: 0,
            second: 1,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------
// The owner index's limits.

/// Three spaces share three kernel page tables; the owner index has room
/// for two. The third table cannot be recorded: every reach of it is an
/// `index-full` fault (never descended, never silently treated as new),
/// while the two recorded tables keep answering as owned.
#[test]
fn more_shared_tables_than_the_owner_index_holds_fault_as_index_full() {
    let mut img = ImageBuilder::new();
    let spaces = [img.alloc(), img.alloc(), img.alloc()]; // 0x1000..=0x3000
    let kpts = [img.alloc(), img.alloc(), img.alloc()]; // 0x4000..=0x6000
    for (i, &k) in kpts.iter().enumerate() {
        for &s in &spaces {
            img.put(s, 0x300 + i as u32, k | PDE_FLAGS);
        }
        img.put(k, 0, (0x0100_0000 + ((i as u32) << 12)) | P | RW);
    }
    let roots = roots(&spaces);
    let kva = |i: u64| 0xC000_0000 + (i << 22);
    let full = |s, i: u64| fault(s, kva(i), 1, 0x4000 + (i << 12), FaultReason::IndexFull);
    let kleaf = |s, i: u64| {
        let pa = 0x0100_0000 + (i << 12);
        leaf4k(s, kva(i), pa, pa as u32 | P | RW, WRITABLE)
    };
    let kalias = |s, i: u64| {
        alias(
            s,
            kva(i),
            0,
            kva(i),
            0x4000 + (i << 12),
            kpts[i as usize] | PDE_FLAGS,
        )
    };

    let two = case(&img.buf[..], &roots).slots(2);
    let mut expect = vec![kleaf(0, 0), kleaf(0, 1), full(0, 2)];
    for s in 1..3 {
        expect.extend([kalias(s, 0), kalias(s, 1), full(s, 2)]);
    }
    assert_eq!(two.refs(), expect);
    let mut expect = vec![];
    for s in 0..3 {
        expect.extend([kleaf(s, 0), kleaf(s, 1), full(s, 2)]);
    }
    assert_eq!(two.follow(), expect);

    // No room at all: every reach of every table.
    let none = case(&img.buf[..], &roots).slots(0);
    let every: Vec<_> = (0..3)
        .flat_map(|s| (0..3).map(move |i| full(s, i)))
        .collect();
    assert_eq!(none.refs(), every);
    assert_eq!(none.follow(), every);

    // Enough room: no fault, every later reach an alias.
    let mut expect = vec![kleaf(0, 0), kleaf(0, 1), kleaf(0, 2)];
    for s in 1..3 {
        expect.extend((0..3).map(|i| kalias(s, i)));
    }
    assert_eq!(case(&img.buf[..], &roots).slots(4).refs(), expect);
    #[cfg(feature = "alloc")]
    {
        let growable: Vec<_> = Walk::new(&img.buf[..], &roots)
            .unwrap()
            .with_owners(ptwalk::GrowableOwners::new())
            .references()
            .collect();
        assert_eq!(growable, expect);
    }

    // An index reused across walks starts empty each time: ownership from
    // an earlier walk never leaks into the next.
    let mut slots = [OwnerSlot::EMPTY; 2];
    let mut index = OwnerIndex::new(&mut slots[..]);
    let first: Vec<_> = Walk::new(&img.buf[..], &roots)
        .unwrap()
        .with_owners(&mut index)
        .references()
        .collect();
    let second: Vec<_> = Walk::new(&img.buf[..], &roots[1..])
        .unwrap()
        .with_owners(&mut index)
        .references()
        .collect();
    assert_eq!(first, two.refs());
    assert_eq!(
        second,
        [
            kleaf(0, 0),
            kleaf(0, 1),
            full(0, 2),
            kalias(1, 0),
            kalias(1, 1),
            full(1, 2)
        ]
    );
}

// ---------------------------------------------------------------------------
// The top of the address space.

/// Ranges at the very top of the 32-bit space, including lengths that
/// overflow 64 bits and addresses past 4 GiB: a range is
/// `[address & !0xFFF, min(address + len, 2^32))`, so the last page is
/// reachable however the range is spelled, and nothing past 4 GiB ever is.
#[test]
fn ranges_at_the_top_of_the_address_space() {
    let mut img = ImageBuilder::new();
    let (a, t, b) = (img.alloc(), img.alloc(), img.alloc()); // 0x1000, 0x2000, 0x3000
    img.put(a, 0x3FF, t | PDE_FLAGS);
    img.put(b, 0x3FF, t | PDE_FLAGS);
    img.put(t, 0x3FE, 0x0010_0000 | P | RW);
    img.put(t, 0x3FF, 0x0010_1000 | P | RW);
    let roots = roots(&[a, b]);
    let page = |s, n: u64| {
        let (va, pa) = (0xFFFF_E000 + (n << 12), 0x10_0000 + (n << 12));
        leaf4k(s, va, pa, pa as u32 | P | RW, WRITABLE)
    };
    let shared = alias(1, 0xFFC0_0000, 0, 0xFFC0_0000, 0x2000, t | PDE_FLAGS);

    let last_page_only = [
        (0xFFFF_F000, 0x1000),
        (0xFFFF_F000, u64::MAX),
        (0xFFFF_FFFF, 1),
        (0xFFFF_FFFF, u64::MAX),
        (0xFFFF_F800, 0x1_0000_0000),
    ];
    for (address, len) in last_page_only {
        let c = case(&img.buf[..], &roots).range(address, len);
        let (refs, follow) = c.modelled();
        assert_eq!(refs, [page(0, 1), shared], "{address:#x}+{len:#x}");
        assert_eq!(follow, [page(0, 1), page(1, 1)], "{address:#x}+{len:#x}");
    }
    let (refs, follow) = case(&img.buf[..], &roots)
        .range(0xFFFF_E000, 0x1001)
        .modelled();
    assert_eq!(refs, [page(0, 0), page(0, 1), shared]);
    assert_eq!(follow, [page(0, 0), page(0, 1), page(1, 0), page(1, 1)]);

    let nothing = [
        (0xFFFF_F000, 0),
        (0x1_0000_0000, 0x1000),
        (0x1_0000_0000, u64::MAX),
        (u64::MAX, 1),
        (u64::MAX, u64::MAX),
        (0xFFFF_FFFF_FFFF_F000, 0x2000),
    ];
    for (address, len) in nothing {
        let (refs, follow) = case(&img.buf[..], &roots).range(address, len).modelled();
        assert!(
            refs.is_empty() && follow.is_empty(),
            "{address:#x}+{len:#x}"
        );
    }

    // The last byte translates; the first byte past 4 GiB does not.
    let Translation::Mapped(l) = translate(&img.buf[..], &roots, 1, 0xFFFF_FFFF) else {
        panic!()
    };
    assert_eq!(
        l.translate(VirtAddr(0xFFFF_FFFF)),
        Some(PhysAddr(0x10_1FFF))
    );
    // Past 4 GiB is not an i686 address at all: an error, not "unmapped".
    assert_eq!(
        Spaces::new(&img.buf[..], &roots)
            .unwrap()
            .translate(SpaceId(1), VirtAddr(0x1_0000_0000)),
        Err(ptwalk::WalkError::Unaddressable(VirtAddr(0x1_0000_0000)))
    );
    // The single-space shape and the run merger at the very top.
    let v: Vec<_> = virt_to_phys(&img.buf[..], roots[1], 0xFFFF_FFFF, u64::MAX).collect();
    assert_eq!(v.len(), 1);
    assert_eq!(
        WalkEvent::Leaf(v[0]),
        page(0, 1),
        "a single walk is space 0"
    );
    let runs: Vec<_> = Walk::single(&img.buf[..], roots[1])
        .range(0xFFFF_E000, u64::MAX)
        .coalesce()
        .collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].va.0, runs[0].pa.0, runs[0].len),
        (0xFFFF_E000, 0x10_0000, 0x2000)
    );
}

/// An alias resolved in memory where the owner's entry has since become a
/// 4 MiB page (or vanished) means nothing here: `Invalid`, not the large
/// page, whose meaning belongs to the owner's entry alone.
#[test]
fn an_alias_whose_owner_entry_became_a_large_page_is_invalid() {
    let mut img = ImageBuilder::new();
    let (a, b, k) = (img.alloc(), img.alloc(), img.alloc());
    img.put(a, 0x300, k | PDE_FLAGS);
    img.put(b, 0x300, k | PDE_FLAGS);
    img.put(b, 0x301, k | PDE_FLAGS);
    img.put(k, 0, 0x0010_0000 | P | RW);
    let roots = roots(&[a, b]);
    let mut edited = img.clone();
    edited.put(a, 0x300, 0x0080_0000 | PS | P | RW);
    let walk = || {
        Walk::new(&img.buf[..], &roots)
            .unwrap()
            .with_owners(OwnerIndex::new(vec![OwnerSlot::EMPTY; 8]))
            .follow_aliases_in(&edited.buf[..])
    };
    let expect = [
        leaf4k(0, 0xC000_0000, 0x10_0000, 0x0010_0003, WRITABLE),
        invalid(1, 0xC000_0000),
        invalid(1, 0xC040_0000),
    ];
    assert_eq!(by_next(walk()), expect);
    assert_eq!(by_fold(walk()), expect);
}
