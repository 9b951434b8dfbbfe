//! Named cases of the 8-byte paging modes (PAE, 4- and 5-level x86-64),
//! each with its whole expected event list: sharing at several levels, NX
//! on one root's path only, one table reached from every entry of a
//! directory, a PAE root inside a page, ranges across the canonical hole,
//! reserved bits. The property tests (tests/modes.rs) check the same
//! rules at random against the reference model; these pin them by name.

use ptwalk::{
    Access, Aliasing, Fault, FaultReason, Leaf, Level, OwnerIndex, OwnerSlot, Pae, PagingMode,
    PhysAddr, Resolution, SpaceId, Spaces, Translation, VirtAddr, Walk, WalkError, WalkEvent,
    X86_64, resolve_alias,
};

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 0x20;
const PS: u64 = 0x80;
const NX: u64 = 1 << 63;
const DIR: u64 = P | RW | US | A;
const UPPER: u64 = 0xffff_8000_0000_0000;

/// A zeroed image of `pages` 4 KiB pages.
fn image(pages: usize) -> Vec<u8> {
    vec![0; pages * 4096]
}

/// Writes 8-byte entry `i` of the table at `table`.
fn put(mem: &mut [u8], table: u64, i: u64, raw: u64) {
    let o = (table + 8 * i) as usize;
    mem[o..o + 8].copy_from_slice(&raw.to_le_bytes());
}

fn roots(r: &[u64]) -> Vec<PhysAddr> {
    r.iter().map(|&r| PhysAddr(r)).collect()
}

fn slots() -> Vec<OwnerSlot> {
    vec![OwnerSlot::EMPTY; 256]
}

fn references<P: PagingMode>(mode: P, mem: &[u8], roots: &[PhysAddr]) -> Vec<WalkEvent> {
    let mut slots = slots();
    Walk::new_in(mode, mem, roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .references()
        .collect()
}

fn follow<P: PagingMode>(mode: P, mem: &[u8], roots: &[PhysAddr]) -> Vec<WalkEvent> {
    let mut slots = slots();
    Walk::new_in(mode, mem, roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .follow_aliases()
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn leaf(
    space: u32,
    va: u64,
    pa: u64,
    entry: u64,
    level: u8,
    size_log2: u8,
    access: Access,
) -> WalkEvent {
    WalkEvent::Leaf(Leaf {
        space: SpaceId(space),
        va: VirtAddr(va),
        pa: PhysAddr(pa),
        entry,
        level: Level(level),
        size_log2,
        access,
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
) -> WalkEvent {
    WalkEvent::Aliasing(Aliasing {
        space: SpaceId(space),
        va: VirtAddr(va),
        owner: SpaceId(owner),
        owner_va: VirtAddr(owner_va),
        table: PhysAddr(table),
        entry,
        level: Level(level),
        size_log2: 3 + 9 * level,
    })
}

const RWX: Access = Access::ALL;
const KRW: Access = Access::from_bits(Access::WRITABLE.bits() | Access::EXECUTE.bits());
const URW_NX: Access = Access::from_bits(Access::WRITABLE.bits() | Access::USER.bits());

/// Roots A and B share one PDPT through their PML4 entry 256 (the kernel
/// half); root C has its own PDPT whose entry 1 reaches the PD under the
/// shared PDPT. Aliases at two levels: B's PML4 entry (level 4) and C's
/// PDPT entry (level 3).
#[test]
fn a_pdpt_shared_by_two_roots_and_a_pd_under_it_shared_by_a_third() {
    let mut m = image(9);
    let (ra, rb, rc, pdpt, pd, pt, pdpt_c) =
        (0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000);
    put(&mut m, ra, 256, pdpt | DIR);
    put(&mut m, rb, 256, pdpt | DIR);
    put(&mut m, rc, 0, pdpt_c | DIR);
    put(&mut m, pdpt_c, 1, pd | DIR);
    put(&mut m, pdpt, 0, pd | DIR);
    put(&mut m, pd, 0, pt | P | RW | A); // supervisor below here
    put(&mut m, pt, 0, 0x10_0000 | P | RW | A);
    put(&mut m, pt, 1, 0x10_1000 | P | RW | A | NX);
    let r = roots(&[ra, rb, rc]);
    let mode = X86_64::default();

    let kernel_nx = Access::WRITABLE;
    let refs = references(mode, &m, &r);
    assert_eq!(
        refs,
        [
            leaf(0, UPPER, 0x10_0000, 0x10_0000 | P | RW | A, 1, 12, KRW),
            leaf(
                0,
                UPPER + 0x1000,
                0x10_1000,
                0x10_1000 | P | RW | A | NX,
                1,
                12,
                kernel_nx
            ),
            alias(1, UPPER, 0, UPPER, pdpt, pdpt | DIR, 4),
            alias(2, 0x4000_0000, 0, UPPER, pd, pd | DIR, 3),
        ]
    );
    // Resolution of each alias gives the table it names.
    for (e, want) in refs[2..].iter().zip([pdpt, pd]) {
        let WalkEvent::Aliasing(a) = e else { panic!() };
        assert_eq!(
            resolve_alias(mode, &m[..], &r, a),
            Resolution::Table(PhysAddr(want))
        );
    }
    assert_eq!(
        follow(mode, &m, &r),
        [
            leaf(0, UPPER, 0x10_0000, 0x10_0000 | P | RW | A, 1, 12, KRW),
            leaf(
                0,
                UPPER + 0x1000,
                0x10_1000,
                0x10_1000 | P | RW | A | NX,
                1,
                12,
                kernel_nx
            ),
            leaf(1, UPPER, 0x10_0000, 0x10_0000 | P | RW | A, 1, 12, KRW),
            leaf(
                1,
                UPPER + 0x1000,
                0x10_1000,
                0x10_1000 | P | RW | A | NX,
                1,
                12,
                kernel_nx
            ),
            leaf(
                2,
                0x4000_0000,
                0x10_0000,
                0x10_0000 | P | RW | A,
                1,
                12,
                KRW
            ),
            leaf(
                2,
                0x4000_1000,
                0x10_1000,
                0x10_1000 | P | RW | A | NX,
                1,
                12,
                kernel_nx
            ),
        ]
    );
}

/// The PTI shape: a process's kernel root and user root reach the same
/// PDPT, the kernel root through an entry with NX. Following the alias,
/// each space keeps its own path: NX leaves in one, executable in the
/// other.
#[test]
fn nx_on_one_roots_upper_entry_only() {
    let mut m = image(6);
    let (user, kernel, pdpt, pd) = (0x1000, 0x2000, 0x3000, 0x4000);
    put(&mut m, user, 0, pdpt | DIR);
    put(&mut m, kernel, 0, pdpt | DIR | NX);
    put(&mut m, pdpt, 0, pd | DIR);
    put(&mut m, pd, 1, 0x20_0000 | P | RW | US | A | PS);
    let r = roots(&[user, kernel]);
    let mode = X86_64::default();
    let page = 0x20_0000 | P | RW | US | A | PS;
    assert_eq!(
        references(mode, &m, &r),
        [
            leaf(0, 0x20_0000, 0x20_0000, page, 2, 21, RWX),
            alias(1, 0, 0, 0, pdpt, pdpt | DIR | NX, 4),
        ]
    );
    assert_eq!(
        follow(mode, &m, &r),
        [
            leaf(0, 0x20_0000, 0x20_0000, page, 2, 21, RWX),
            leaf(1, 0x20_0000, 0x20_0000, page, 2, 21, URW_NX),
        ]
    );
    // Translation agrees, space by space.
    let spaces = Spaces::new_in(mode, &m[..], &r).unwrap();
    for (s, exec) in [(0, true), (1, false)] {
        let Ok(Translation::Mapped(l)) = spaces.translate(SpaceId(s), VirtAddr(0x20_1234)) else {
            panic!("space {s}")
        };
        assert_eq!((l.pa.0, l.access.executable()), (0x20_0000, exec));
    }
}

/// Every entry of one page directory names the same page table (Linux's
/// ESPFIX area does this): the first entry owns it, the other 511 alias
/// it, and following them gives 512 leaves.
#[test]
fn one_pt_reached_from_512_entries_of_one_pd() {
    let mut m = image(6);
    let (root, pdpt, pd, pt) = (0x1000, 0x2000, 0x3000, 0x4000);
    put(&mut m, root, 0, pdpt | DIR);
    put(&mut m, pdpt, 0, pd | DIR);
    for i in 0..512 {
        put(&mut m, pd, i, pt | P | A); // read-only directory entries
    }
    let pte = 0x7_7000 | P | RW | A;
    put(&mut m, pt, 7, pte);
    let r = roots(&[root]);
    let mode = X86_64::default();
    let ro = Access::EXECUTE;
    let refs = references(mode, &m, &r);
    assert_eq!(refs.len(), 512);
    assert_eq!(refs[0], leaf(0, 0x7000, 0x7_7000, pte, 1, 12, ro));
    for (i, e) in refs[1..].iter().enumerate() {
        let va = (i as u64 + 1) << 21;
        assert_eq!(*e, alias(0, va, 0, 0, pt, pt | P | A, 2));
    }
    let leaves = follow(mode, &m, &r);
    let want: Vec<_> = (0..512u64)
        .map(|i| leaf(0, (i << 21) + 0x7000, 0x7_7000, pte, 1, 12, ro))
        .collect();
    assert_eq!(leaves, want);
}

/// PAE PDPTs are 32-byte objects, several per page: two roots in one page
/// are two spaces in PAE (and one page directory repeated in i686).
#[test]
fn a_pae_root_at_a_non_page_aligned_address() {
    let mut m = image(4);
    let (r1, r2, pd, pt) = (0x1020u64, 0x1040u64, 0x2000, 0x3000);
    // QEMU's TCG leaves the accessed bit set in PDPTEs: accepted.
    put(&mut m, r1, 3, pd | P | A);
    put(&mut m, r2, 0, pd | P);
    put(&mut m, pd, 0, 0x20_0000 | P | RW | US | PS | NX);
    put(&mut m, pd, 1, pt | P | RW | US);
    put(&mut m, pt, 5, 0x9000 | P | US);
    let r = roots(&[r1 | 0x18, r2]); // CR3 may carry PWT/PCD
    let mode = Pae::default();
    let big = 0x20_0000 | P | RW | US | PS | NX;
    let small = 0x9000 | P | US;
    let user_ro = Access::from_bits(Access::USER.bits() | Access::EXECUTE.bits());
    assert_eq!(
        references(mode, &m, &r),
        [
            leaf(0, 0xC000_0000, 0x20_0000, big, 2, 21, URW_NX),
            leaf(0, 0xC020_5000, 0x9000, small, 1, 12, user_ro),
            alias(1, 0, 0, 0xC000_0000, pd, pd | P, 3),
        ]
    );
    assert_eq!(
        follow(mode, &m, &r),
        [
            leaf(0, 0xC000_0000, 0x20_0000, big, 2, 21, URW_NX),
            leaf(0, 0xC020_5000, 0x9000, small, 1, 12, user_ro),
            leaf(1, 0, 0x20_0000, big, 2, 21, URW_NX),
            leaf(1, 0x20_5000, 0x9000, small, 1, 12, user_ro),
        ]
    );
    // As i686 page directories the two roots are one table.
    assert!(matches!(
        Walk::new(&m[..], &r),
        Err(WalkError::DuplicateRoot { .. })
    ));
}

/// A range across x86-64's non-canonical hole is the end of the lower half
/// and the start of the upper half, in that order; a range inside the
/// hole is empty; a non-canonical VA is not translatable.
#[test]
fn a_range_across_the_canonical_hole() {
    let mut m = image(9);
    let (root, lo_pdpt, lo_pd, lo_pt, hi_pdpt, hi_pd, hi_pt) =
        (0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000, 0x7000);
    put(&mut m, root, 255, lo_pdpt | DIR);
    put(&mut m, lo_pdpt, 511, lo_pd | DIR);
    put(&mut m, lo_pd, 511, lo_pt | DIR);
    put(&mut m, lo_pt, 511, 0xA000 | P | US);
    put(&mut m, root, 256, hi_pdpt | DIR);
    put(&mut m, hi_pdpt, 0, hi_pd | DIR);
    put(&mut m, hi_pd, 0, hi_pt | DIR);
    put(&mut m, hi_pt, 0, 0xB000 | P);
    let r = roots(&[root]);
    let mode = X86_64::default();
    let last_low = 0x7fff_ffff_f000;
    let lo = leaf(
        0,
        last_low,
        0xA000,
        0xA000 | P | US,
        1,
        12,
        Access::from_bits(6),
    );
    let hi = leaf(0, UPPER, 0xB000, 0xB000 | P, 1, 12, Access::EXECUTE);
    let walk = |address: u64, len: u64| -> Vec<WalkEvent> {
        Walk::new_in(mode, &m[..], &r)
            .unwrap()
            .range(address, len)
            .collect()
    };
    assert_eq!(walk(last_low, UPPER + 0x1000 - last_low), [lo, hi]);
    assert_eq!(walk(0, u64::MAX), [lo, hi]);
    assert_eq!(walk(last_low, 0x1000), [lo]);
    // Starting in the hole: only the upper half.
    assert_eq!(walk(0x8000_0000_0000, UPPER + 1 - 0x8000_0000_0000), [hi]);
    // Wholly inside the hole: nothing.
    assert_eq!(walk(0x8000_0000_0000, 0x1000_0000), []);
    assert_eq!(walk(UPPER - 0x1000, 0x1000), []);
    // Translation: the hole is not an address.
    let spaces = Spaces::new_in(mode, &m[..], &r).unwrap();
    assert_eq!(
        spaces.translate(SpaceId(0), VirtAddr(0x8000_0000_0000)),
        Err(WalkError::Unaddressable(VirtAddr(0x8000_0000_0000)))
    );
    assert!(matches!(
        spaces.translate(SpaceId(0), VirtAddr(UPPER + 0x123)),
        Ok(Translation::Mapped(l)) if l.translate(VirtAddr(UPPER + 0x123)) == Some(PhysAddr(0xB123))
    ));
}

/// 5-level paging: the PML5 indexes bits 48..=56 and the upper half starts
/// at `0xff00_0000_0000_0000`.
#[test]
fn la57_reports_57_bit_canonical_vas() {
    let mut m = image(7);
    let (root, pml4, pdpt, pd, pt) = (0x1000, 0x2000, 0x3000, 0x4000, 0x5000);
    let va = 0xff11_2233_4445_6000u64;
    let ix = |l: u8| (va >> (3 + 9 * u32::from(l))) & 511;
    put(&mut m, root, ix(5), pml4 | DIR);
    put(&mut m, pml4, ix(4), pdpt | DIR);
    put(&mut m, pdpt, ix(3), pd | DIR);
    put(&mut m, pd, ix(2), pt | DIR);
    put(&mut m, pt, ix(1), 0xC000 | P | RW);
    let r = roots(&[root]);
    let got: Vec<WalkEvent> = Walk::new_in(X86_64::LA57, &m[..], &r).unwrap().collect();
    assert_eq!(got, [leaf(0, va, 0xC000, 0xC000 | P | RW, 1, 12, KRW)]);
    // The same tables read as 4-level paging start one level lower.
    let four: Vec<WalkEvent> = Walk::new_in(X86_64::default(), &m[..], &r)
        .unwrap()
        .collect();
    assert!(four.iter().all(|e| e.va().0 != va));
}

/// Reserved bits make an entry translate nothing, at the level it sits:
/// PS in a PML4 entry, bits 13..=29 of a 1 GiB page, bit 63 without NXE,
/// an address bit at or above MAXPHYADDR.
#[test]
fn reserved_bits_fault_where_the_entry_is() {
    let mut m = image(6);
    let (root, pdpt, pd, pt) = (0x1000, 0x2000, 0x3000, 0x4000);
    put(&mut m, root, 1, 0x5000 | DIR | PS); // PS in a PML4E
    put(&mut m, root, 0, pdpt | DIR);
    put(&mut m, pdpt, 1, 0x4000_0000 | P | PS | (1 << 13)); // 1 GiB, bit 13
    put(&mut m, pdpt, 2, 0x8000_0000 | P | PS); // a good 1 GiB page
    put(&mut m, pdpt, 0, pd | DIR);
    put(&mut m, pd, 0, pt | DIR);
    put(&mut m, pt, 0, 0xD000 | P | NX);
    put(&mut m, pt, 1, (1 << 40) | 0xE000 | P);
    let r = roots(&[root]);
    let fault = |va: u64, level: u8, pa: u64| {
        WalkEvent::Fault(Fault {
            space: SpaceId(0),
            va: VirtAddr(va),
            level: Level(level),
            pa: PhysAddr(pa),
            reason: FaultReason::Reserved,
        })
    };
    let gib = leaf(
        0,
        0x8000_0000,
        0x8000_0000,
        0x8000_0000 | P | PS,
        3,
        30,
        Access::EXECUTE,
    );
    let walk =
        |mode: X86_64| -> Vec<WalkEvent> { Walk::new_in(mode, &m[..], &r).unwrap().collect() };
    let nx_pte = leaf(0, 0, 0xD000, 0xD000 | P | NX, 1, 12, Access::NONE);
    let high_pte = leaf(
        0,
        0x1000,
        (1 << 40) | 0xE000,
        (1 << 40) | 0xE000 | P,
        1,
        12,
        Access::EXECUTE,
    );
    assert_eq!(
        walk(X86_64::default()),
        [
            nx_pte,
            high_pte,
            fault(0x4000_0000, 3, 0x4000_0000),
            gib,
            fault(1 << 39, 4, 0x5000)
        ]
    );
    assert_eq!(
        walk(X86_64::default().with_nxe(false).with_max_phys_bits(40)),
        [
            fault(0, 1, 0xD000),
            fault(0x1000, 1, (1 << 40) | 0xE000),
            fault(0x4000_0000, 3, 0x4000_0000),
            gib,
            fault(1 << 39, 4, 0x5000),
        ]
    );
    // Translation reports the same fault.
    let spaces = Spaces::new_in(X86_64::default().with_nxe(false), &m[..], &r).unwrap();
    assert_eq!(
        spaces.translate(SpaceId(0), VirtAddr(0x10)),
        Ok(Translation::Fault(Fault {
            space: SpaceId(0),
            va: VirtAddr(0),
            level: Level(1),
            pa: PhysAddr(0xD000),
            reason: FaultReason::Reserved,
        }))
    );
}

/// A memory that lends more than it is asked for: everything from the
/// address on (the trait asks for exactly `len` bytes; a backend that
/// gives more must still not make the walk read past a table).
struct LendsTooMuch<'a>(&'a [u8]);

impl ptwalk::PhysMem for LendsTooMuch<'_> {
    fn frozen(&self) -> bool {
        true
    }
    fn lend(&self, pa: PhysAddr, len: usize) -> Result<&[u8], ptwalk::MemError> {
        match self.0.get(pa.0 as usize..) {
            Some(s) if s.len() >= len => Ok(s),
            _ => Err(ptwalk::MemError::OutOfBounds {
                pa,
                len: len as u64,
            }),
        }
    }
}

#[test]
fn a_table_lent_longer_than_asked_is_read_to_its_end_only() {
    let mut mem = image(6);
    put(&mut mem, 0x1000, 0, 0x2000 | DIR);
    put(&mut mem, 0x2000, 0, 0x3000 | DIR);
    put(&mut mem, 0x3000, 0, 0x4000 | DIR);
    put(&mut mem, 0x4000, 0, 0x7000_0000 | P);
    // The page after the page table: present-looking, but not a table.
    put(&mut mem, 0x5000, 0, 0x8000_0000 | P);
    let lent = LendsTooMuch(&mem);
    let roots = roots(&[0x1000]);
    let walk = || Walk::new_in(X86_64::new(), &lent, &roots).unwrap();
    let by_next: Vec<WalkEvent> = walk().collect();
    let by_fold = walk().fold(Vec::new(), |mut v, e| {
        v.push(e);
        v
    });
    assert_eq!(by_next, by_fold);
    assert_eq!(by_fold.len(), 1, "{by_fold:?}");
    assert!(matches!(by_fold[0], WalkEvent::Leaf(l) if l.pa == PhysAddr(0x7000_0000)));
}
