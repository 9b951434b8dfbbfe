//! Example tests: the upstream issue's acceptance points and the
//! hand-built cases docs/DESIGN.md spells out.

mod common;

use common::{ImageBuilder, P, PDE_FLAGS, PS, RW, US};
use ptwalk::{
    Access, FaultReason, I686, Level, OwnerIndex, OwnerSlot, PhysAddr, Resolution, SpaceId,
    VirtAddr, Walk, WalkError, WalkEvent, WalkExt, resolve_alias, virt_to_phys,
};

const KVA: u32 = 0xC000_0000;

/// Two processes sharing the kernel page table at KVA; process 0 owns it.
struct Shared {
    img: ImageBuilder,
    roots: Vec<PhysAddr>,
    kpt: u32,
}

fn shared() -> Shared {
    let mut img = ImageBuilder::new();
    let r0 = img.alloc();
    let r1 = img.alloc();
    let kpt = img.alloc();
    img.put(r0, KVA >> 22, kpt | PDE_FLAGS);
    img.put(r1, KVA >> 22, kpt | PDE_FLAGS);
    img.put(kpt, 0, 0x0010_0000 | P | RW);
    img.put(kpt, 1, 0x0010_1000 | P);
    Shared {
        img,
        roots: vec![PhysAddr(r0.into()), PhysAddr(r1.into())],
        kpt,
    }
}

fn refs(mem: &[u8], roots: &[PhysAddr]) -> Vec<WalkEvent> {
    let mut slots = [OwnerSlot::EMPTY; 64];
    Walk::new(mem, roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .references()
        .collect()
}

fn followed(mem: &[u8], roots: &[PhysAddr]) -> Vec<WalkEvent> {
    let mut slots = [OwnerSlot::EMPTY; 64];
    Walk::new(mem, roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .follow_aliases()
        .collect()
}

/// Upstream: `Aliasing` (formerly `AnotherSpace`) is a reference to where
/// the real mapping lives: it names the owner and the owner's VA, and the
/// references consumer does not descend it.
#[test]
fn aliasing_names_the_owner_and_is_not_descended() {
    let s = shared();
    let ev = refs(&s.img.buf, &s.roots);
    assert_eq!(ev.len(), 3, "{ev:#?}");
    let WalkEvent::Aliasing(a) = ev[2] else {
        panic!("{ev:#?}")
    };
    assert_eq!((a.space, a.owner), (SpaceId(1), SpaceId(0)));
    assert_eq!(
        (a.va, a.owner_va),
        (VirtAddr(KVA.into()), VirtAddr(KVA.into()))
    );
    assert_eq!(
        (a.table, a.level, a.len()),
        (PhysAddr(s.kpt.into()), Level(2), 4 << 20)
    );
    assert_eq!(a.entry, u64::from(s.kpt | PDE_FLAGS));
}

/// Upstream: `virt_to_phys` on an aliased PT page resolves to the leaves
/// of the owning space (it used to get back nothing).
#[test]
fn follow_on_an_aliased_pt_yields_the_owners_leaves() {
    let s = shared();
    let ev = followed(&s.img.buf, &s.roots);
    let leaves: Vec<_> = ev.iter().filter_map(WalkEvent::leaf).collect();
    assert_eq!(leaves.len(), 4);
    for space in 0..2 {
        let mine: Vec<_> = leaves.iter().filter(|l| l.space.0 == space).collect();
        assert_eq!(mine.len(), 2);
        assert_eq!((mine[0].va.0, mine[0].pa.0), (u64::from(KVA), 0x10_0000));
        assert_eq!(
            (mine[1].va.0, mine[1].pa.0),
            (u64::from(KVA) + 0x1000, 0x10_1000)
        );
    }
    // The single-space upstream shape, on the space that does not own it.
    let v: Vec<_> = virt_to_phys(&s.img.buf[..], s.roots[1], KVA.into(), 0x2000).collect();
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[1].translate(VirtAddr(u64::from(KVA) + 0x1234)),
        Some(PhysAddr(0x10_1234))
    );
}

/// Upstream: "no valid entry at the alias target" resolves to "no valid
/// entry here" at the reference site.
#[test]
fn empty_alias_target_is_invalid_here() {
    let s = shared();
    let mem = s.img.buf.clone();
    // The owner loses its entry (e.g. its region was dropped from a rebuilt
    // snapshot) after ownership was decided.
    let mut edited = s.img.clone();
    edited.put(s.roots[0].0 as u32, KVA >> 22, 0);
    let mut slots = [OwnerSlot::EMPTY; 64];
    let ev: Vec<_> = Walk::new(&mem[..], &s.roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .follow_aliases_in(&edited.buf[..])
        .collect();
    let WalkEvent::Invalid(inv) = ev[2] else {
        panic!("{ev:#?}")
    };
    assert_eq!(
        (inv.space, inv.va.0, inv.level, inv.len()),
        (SpaceId(1), u64::from(KVA), Level(2), 4 << 20)
    );
    assert_eq!(ev.len(), 3, "space 1 gets no leaves there: {ev:#?}");
    // The same through the resolution function a rebuild calls.
    let WalkEvent::Aliasing(a) = refs(&mem, &s.roots)[2] else {
        panic!()
    };
    assert_eq!(
        resolve_alias(I686::default(), &edited.buf[..], &s.roots, &a),
        Resolution::Invalid
    );
    assert_eq!(
        resolve_alias(I686::default(), &mem[..], &s.roots, &a),
        Resolution::Table(PhysAddr(s.kpt.into()))
    );
}

/// Upstream: one shared descent. The follow stream is the references
/// stream with each alias replaced by what it resolves to: same order,
/// same owned leaves, nothing walked differently.
#[test]
fn one_shared_descent_serves_both_consumers() {
    let s = shared();
    let r = refs(&s.img.buf, &s.roots);
    let f = followed(&s.img.buf, &s.roots);
    assert_eq!(r[..2], f[..2], "owned leaves are identical");
    assert!(matches!(r[2], WalkEvent::Aliasing(_)));
    assert!(
        f[2..]
            .iter()
            .all(|e| matches!(e, WalkEvent::Leaf(l) if l.space.0 == 1))
    );
    // The upstream shapes are those two consumers.
    #[cfg(feature = "alloc")]
    {
        let upstream: Vec<_> = ptwalk::walk_va_spaces(&s.img.buf[..], &s.roots, 0, u64::MAX)
            .unwrap()
            .collect();
        assert_eq!(upstream, r);
    }
    let v: Vec<_> = virt_to_phys(&s.img.buf[..], s.roots[1], 0, u64::MAX).collect();
    let f1: Vec<_> = f
        .iter()
        .filter_map(WalkEvent::leaf)
        .filter(|l| l.space.0 == 1)
        .map(|l| (l.va, l.pa))
        .collect();
    assert_eq!(v.iter().map(|l| (l.va, l.pa)).collect::<Vec<_>>(), f1);
}

/// Upstream: the rebuild path keeps working. A rebuild loop over the
/// references stream (copy owned tables, re-link aliases to the owner's
/// rebuilt table) reproduces every space's view and keeps the table shared.
#[test]
fn rebuild_from_references_keeps_sharing() {
    let s = shared();
    let mut out = ImageBuilder::new();
    let new_roots: Vec<u32> = s.roots.iter().map(|_| out.alloc()).collect();
    let mut rebuilt_pt = std::collections::HashMap::new();
    for e in refs(&s.img.buf, &s.roots) {
        match e {
            WalkEvent::Leaf(l) => {
                let root = new_roots[l.space.index()];
                let pdi = (l.va.0 >> 22) as u32;
                let pt = *rebuilt_pt.entry((l.space, pdi)).or_insert_with(|| {
                    let pt = out.alloc();
                    out.put(root, pdi, pt | PDE_FLAGS);
                    pt
                });
                out.put(pt, ((l.va.0 >> 12) & 0x3FF) as u32, l.entry as u32);
            }
            WalkEvent::Aliasing(a) => {
                // Resolve against the rebuilt tables, keep our own flags.
                let rebuilt: Vec<PhysAddr> =
                    new_roots.iter().map(|&r| PhysAddr(r.into())).collect();
                match resolve_alias(I686::default(), &out.buf[..], &rebuilt, &a) {
                    Resolution::Table(t) => {
                        let flags = a.entry as u32 & 0xFFF;
                        out.put(
                            new_roots[a.space.index()],
                            (a.va.0 >> 22) as u32,
                            t.0 as u32 | flags,
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }
    let new: Vec<PhysAddr> = new_roots.iter().map(|&r| PhysAddr(r.into())).collect();
    assert_eq!(followed(&out.buf, &new), followed(&s.img.buf, &s.roots));
    // Still one table, shared: the second space aliases the first again.
    assert_eq!(
        refs(&out.buf, &new)
            .iter()
            .filter(|e| matches!(e, WalkEvent::Aliasing(_)))
            .count(),
        1
    );
}

/// An alias within one space: the same page table under two directory
/// entries. The second entry aliases the first (owner VA differs).
#[test]
fn same_space_alias_at_another_va() {
    let mut img = ImageBuilder::new();
    let root = img.alloc();
    let pt = img.alloc();
    img.put(root, 1, pt | PDE_FLAGS);
    img.put(root, 5, pt | P | US); // read-only view of the same table
    img.put(pt, 3, 0x0020_0000 | P | RW | US);
    let roots = [PhysAddr(root.into())];
    let r = refs(&img.buf, &roots);
    let WalkEvent::Aliasing(a) = r[1] else {
        panic!("{r:#?}")
    };
    assert_eq!(
        (a.space, a.owner, a.va.0, a.owner_va.0),
        (SpaceId(0), SpaceId(0), 5 << 22, 1 << 22)
    );
    // Following: the second view maps the same frame at its own VA with
    // its own (read-only) directory entry's access.
    let f = followed(&img.buf, &roots);
    let WalkEvent::Leaf(l) = f[1] else {
        panic!("{f:#?}")
    };
    assert_eq!((l.va.0, l.pa.0), ((5 << 22) + 0x3000, 0x20_0000));
    assert_eq!(l.access, Access::USER | Access::EXECUTE);
    assert_eq!(f[0].leaf().unwrap().access, Access::ALL);
}

/// Effective access is ours: a supervisor-only directory entry over a
/// shared table whose owner maps it user-writable yields kernel access.
#[test]
fn followed_access_is_our_path_not_the_owners() {
    let mut s = shared();
    let r1 = s.roots[1].0 as u32;
    s.img.put(r1, KVA >> 22, s.kpt | P); // read-only, supervisor
    s.img.put(s.kpt, 0, 0x0010_0000 | P | RW | US);
    let f = followed(&s.img.buf, &s.roots);
    let l0 = f[0].leaf().unwrap();
    let l1 = f
        .iter()
        .filter_map(WalkEvent::leaf)
        .find(|l| l.space.0 == 1)
        .unwrap();
    assert_eq!(l0.access, Access::ALL);
    assert_eq!(l1.access, Access::EXECUTE);
    assert_eq!(l1.entry, l0.entry, "the leaf entry itself is the owner's");
}

#[test]
fn large_pages_with_and_without_pse() {
    let mut img = ImageBuilder::new();
    let root = img.alloc();
    let pde = 0x0080_0000 | (0x3 << 13) | PS | P | RW;
    img.put(root, 2, pde);
    let roots = [PhysAddr(root.into())];
    let f = followed(&img.buf, &roots);
    let l = f[0].leaf().unwrap();
    assert_eq!(
        (l.va.0, l.pa.0, l.size(), l.level),
        (2 << 22, 0x3_0080_0000, 4 << 20, Level(2))
    );
    assert_eq!(l.entry, u64::from(pde));
    // PSE off: the same entry names a page table at 0x806000, outside memory.
    let no_pse: Vec<_> = Walk::new(&img.buf[..], &roots)
        .unwrap()
        .with_mode(I686 { pse: false })
        .collect();
    let WalkEvent::Fault(fault) = no_pse[0] else {
        panic!("{no_pse:#?}")
    };
    assert_eq!(
        (fault.pa.0, fault.level, fault.va.0),
        (0x0080_6000, Level(1), 2 << 22)
    );
}

/// A large page shared by two spaces is two leaves, never an alias.
#[test]
fn a_large_page_is_never_an_alias() {
    let mut img = ImageBuilder::new();
    let (a, b) = (img.alloc(), img.alloc());
    img.put(a, 0x300, 0x0040_0000 | PS | P);
    img.put(b, 0x300, 0x0040_0000 | PS | P);
    let roots = [PhysAddr(a.into()), PhysAddr(b.into())];
    let r = refs(&img.buf, &roots);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|e| e.leaf().is_some()));
}

/// Leaf frames are not read: device memory far outside the image is a
/// normal leaf.
#[test]
fn device_frames_outside_memory_are_leaves() {
    let mut img = ImageBuilder::new();
    let root = img.alloc();
    let pt = img.alloc();
    img.put(root, 0x3FF, pt | PDE_FLAGS);
    img.put(pt, 0x3EE, 0xFEE0_0000 | P | RW); // local APIC
    let f = followed(&img.buf, &[PhysAddr(root.into())]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].leaf().unwrap().pa.0, 0xFEE0_0000);
}

/// A table outside memory faults at every reach and is never owned.
#[test]
fn unreadable_table_faults_at_every_reach() {
    let mut img = ImageBuilder::new();
    let (a, b) = (img.alloc(), img.alloc());
    img.put(a, 7, 0x0FFF_F000 | PDE_FLAGS);
    img.put(b, 7, 0x0FFF_F000 | PDE_FLAGS);
    img.put(b, 8, 0x0FFF_F000 | PDE_FLAGS);
    let roots = [PhysAddr(a.into()), PhysAddr(b.into())];
    let r = refs(&img.buf, &roots);
    assert_eq!(r.len(), 3);
    for (e, (space, va)) in r.iter().zip([(0, 7u64 << 22), (1, 7 << 22), (1, 8 << 22)]) {
        let WalkEvent::Fault(f) = e else {
            panic!("{r:#?}")
        };
        assert_eq!(
            (f.space.0, f.va.0, f.level, f.pa.0, f.reason),
            (space, va, Level(1), 0x0FFF_F000, FaultReason::OutOfBounds)
        );
    }
    // A root outside memory faults too, and the walk goes on.
    let roots = [PhysAddr(0x10_0000), PhysAddr(a.into())];
    let r = refs(&img.buf, &roots);
    assert!(matches!(r[0], WalkEvent::Fault(f) if f.level == Level(2) && f.space.0 == 0));
    assert!(matches!(r[1], WalkEvent::Fault(f) if f.space.0 == 1));
}

#[test]
fn duplicate_roots_are_an_error() {
    let mem = vec![0u8; 0x3000];
    let roots = [PhysAddr(0x1000), PhysAddr(0x2000), PhysAddr(0x1000)];
    let err = Walk::new(&mem[..], &roots).unwrap_err();
    assert_eq!(
        err,
        WalkError::DuplicateRoot {
            root: PhysAddr(0x1000),
            first: 0,
            second: 2
        }
    );
    assert!(err.to_string().contains("0x1000"));
}

/// A full owner index is reported at every reach it cannot record; an
/// alias is never silently missed (nor silently walked twice).
#[test]
fn full_owner_index_is_reported_not_missed() {
    let s = shared();
    let mut slots = [OwnerSlot::EMPTY; 0];
    let ev: Vec<_> = Walk::new(&s.img.buf[..], &s.roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .references()
        .collect();
    assert_eq!(ev.len(), 2, "{ev:#?}");
    assert!(
        ev.iter()
            .all(|e| matches!(e, WalkEvent::Fault(f) if f.reason == FaultReason::IndexFull))
    );
}

/// Ranges that start and end inside regions: leaves are whole, an alias
/// describes our whole entry, the follow consumer clips the resolved leaves.
#[test]
fn ranges_inside_regions() {
    let mut s = shared();
    for i in 0..8 {
        s.img.put(s.kpt, i, (0x0010_0000 + i * 0x1000) | P);
    }
    let start = u64::from(KVA) + 0x2800; // inside page 2
    let len = 0x2000; // ends inside page 4
    let mut slots = [OwnerSlot::EMPTY; 64];
    let walk = || {
        Walk::new(&s.img.buf[..], &s.roots)
            .unwrap()
            .range(start, len)
    };
    let r: Vec<_> = walk()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .references()
        .collect();
    let own: Vec<u64> = r
        .iter()
        .filter_map(WalkEvent::leaf)
        .map(|l| l.va.0 - u64::from(KVA))
        .collect();
    assert_eq!(own, [0x2000, 0x3000, 0x4000]);
    let WalkEvent::Aliasing(a) = r[3] else {
        panic!("{r:#?}")
    };
    assert_eq!((a.va.0, a.len()), (u64::from(KVA), 4 << 20));
    let f: Vec<_> = walk()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .follow_aliases()
        .leaves()
        .filter(|l| l.space.0 == 1)
        .map(|l| l.va.0 - u64::from(KVA))
        .collect();
    assert_eq!(f, [0x2000, 0x3000, 0x4000]);
    // An empty range yields nothing at all.
    assert_eq!(walk().range(start, 0).count(), 0);
    // A range past the 32-bit space yields nothing.
    assert_eq!(walk().range(1 << 32, 1 << 20).count(), 0);
}

#[test]
fn walk_is_fused_and_restartable_by_building_again() {
    let s = shared();
    let mut w = Walk::new(&s.img.buf[..], &s.roots).unwrap();
    assert_eq!(w.by_ref().count(), 4);
    assert_eq!(w.next(), None);
    assert_eq!(w.next(), None);
    assert_eq!(w.range(0, u64::MAX).count(), 4);
}

#[test]
fn copy_on_write_pages_are_visible() {
    let mut img = ImageBuilder::new();
    let root = img.alloc();
    img.map_range(root, 0x0800_0000, 8, 0x100_0000, true);
    let leaves: Vec<_> = virt_to_phys(&img.buf[..], PhysAddr(root.into()), 0, u64::MAX).collect();
    assert_eq!(leaves.iter().filter(|l| l.is_cow()).count(), 1);
    let cow = leaves.iter().find(|l| l.is_cow()).unwrap();
    assert_eq!(
        (cow.va.0, cow.access),
        (0x0800_7000, Access::USER | Access::EXECUTE)
    );
    assert_eq!(cow.access.to_string(), "ro,user");
}

/// The in-guest raw-pointer backend walks exactly like the slice it points
/// at, and stays bounds-checked.
#[test]
fn raw_pointer_memory_walks_like_a_slice() {
    let s = shared();
    let buf = s.img.buf.clone();
    // SAFETY: `buf` outlives `mem` and nothing writes it while `mem` lives.
    let mem = unsafe { ptwalk::RawMem::new(buf.as_ptr(), PhysAddr(0), buf.len()) };
    let mut slots = [OwnerSlot::EMPTY; 64];
    let raw: Vec<_> = Walk::new(&mem, &s.roots)
        .unwrap()
        .with_owners(OwnerIndex::new(&mut slots[..]))
        .references()
        .collect();
    assert_eq!(raw, refs(&buf, &s.roots));
    use ptwalk::PhysMem;
    assert!(mem.read_u32(PhysAddr(buf.len() as u64)).is_err());
}

/// A table that spans two separately backed regions cannot be lent: it is
/// a `split` fault, not a panic and not a silent miss.
#[test]
fn table_across_two_regions_is_a_split_fault() {
    let s = shared();
    let (lo, hi) = s.img.buf.split_at(s.kpt as usize + 0x800);
    let images = [
        ptwalk::Image::new(PhysAddr(0), lo),
        ptwalk::Image::new(PhysAddr(lo.len() as u64), hi),
    ];
    let mem = ptwalk::Regions::new(&images).unwrap();
    let ev: Vec<_> = Walk::new(&mem, &s.roots).unwrap().collect();
    assert_eq!(ev.len(), 2, "{ev:#?}");
    for e in ev {
        assert!(
            matches!(e, WalkEvent::Fault(f) if f.reason == FaultReason::Split && f.pa.0 == u64::from(s.kpt))
        );
    }
    // Overlapping regions are refused up front.
    let bad = [
        ptwalk::Image::new(PhysAddr(0), lo),
        ptwalk::Image::new(PhysAddr(0x10), hi),
    ];
    assert_eq!(ptwalk::Regions::new(&bad).unwrap_err().index, 1);
}
