//! Every subcommand in every paging mode: small PAE, 4-level and 5-level
//! images (8-byte entries) built here, walked, translated, mapped, listed
//! and compacted with `--mode`; ELF64 cores whose QEMU notes name a
//! long-mode or PAE vCPU walk in that mode with no other argument; VAs
//! are printed canonical, an unaddressable VA is one error line.
#![cfg(feature = "cli")]

mod cli_support;

use std::process::Output;

use object::elf;

use cli_support::{Cpu, core, fails, ok, ptwalk, scratch, stderr, write};

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
/// A directory entry granting everything, so the leaves decide.
const DIR: u64 = P | RW | US | A;

/// Physical memory of 8-byte-entry tables: page 0 empty, tables handed
/// out upward from 0x1000 (below `0x10_0000`), data above, each word
/// holding its own address (so copied contents can be told apart).
struct Builder {
    buf: Vec<u8>,
    next: u64,
}

impl Builder {
    /// `len` bytes of memory, tables from 0x1000 up to `0x10_0000`, data
    /// above.
    fn new(len: usize) -> Builder {
        let mut buf = vec![0u8; len];
        for (i, chunk) in buf.chunks_exact_mut(8).enumerate().skip(0x10_0000 / 8) {
            chunk.copy_from_slice(&((i as u64 * 8) | 0x5a).to_le_bytes());
        }
        Builder { buf, next: 0x1000 }
    }

    fn alloc(&mut self) -> u64 {
        let t = self.next;
        self.next += 0x1000;
        assert!(self.next <= 0x10_0000);
        t
    }

    fn put(&mut self, table: u64, i: u64, v: u64) {
        let o = (table + 8 * i) as usize;
        self.buf[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Sign-extends a 48-bit (or 57-bit) linear address.
fn canonical(linear: u64, bits: u32) -> u64 {
    let unused = 64 - bits;
    (((linear << unused) as i64) >> unused) as u64
}

/// The 4-level image: roots A and B share a kernel PDPT through PML4
/// entry 273 (`0xffff_8880_0000_0000`), B's entry with NX; it holds a
/// 1 GiB page (its frame past the image: device memory) and a page
/// table. A has user pages (one NX) and a 2 MiB page; B a 2 MiB page at
/// the top of the space (`0xffff_ffff_8000_0000`, where kernels put their
/// text).
struct Long {
    mem: Vec<u8>,
    a: u64,
    b: u64,
    pdpt_k: u64,
}

fn long_image() -> Long {
    let mut m = Builder::new(0x60_0000);
    let (a, b) = (m.alloc(), m.alloc());
    let (pdpt_a, pd_a, pt_a) = (m.alloc(), m.alloc(), m.alloc());
    m.put(a, 0, pdpt_a | DIR);
    m.put(pdpt_a, 0, pd_a | DIR);
    m.put(pd_a, 2, pt_a | DIR); // VA 0x40_0000
    m.put(pt_a, 0, 0x10_0000 | P | US | RW | A);
    m.put(pt_a, 1, 0x10_1000 | P | US | A | NX);
    m.put(pd_a, 3, 0x20_0000 | P | RW | A | PS); // VA 0x60_0000, 2 MiB
    let (pdpt_k, pd_k, pt_k) = (m.alloc(), m.alloc(), m.alloc());
    m.put(a, 273, pdpt_k | DIR);
    m.put(b, 273, pdpt_k | DIR | NX);
    m.put(pdpt_k, 0, 0x4000_0000 | P | RW | A | PS | NX); // 1 GiB
    m.put(pdpt_k, 1, pd_k | DIR);
    m.put(pd_k, 0, pt_k | DIR);
    m.put(pt_k, 5, 0x10_5000 | P | RW | A); // VA 0xffff_8880_4000_5000
    let (pdpt_hi, pd_hi) = (m.alloc(), m.alloc());
    m.put(b, 511, pdpt_hi | DIR);
    m.put(pdpt_hi, 510, pd_hi | DIR);
    m.put(pd_hi, 0, 0x40_0000 | P | A | PS | (1 << 8)); // global, read-only
    Long {
        mem: m.buf,
        a,
        b,
        pdpt_k,
    }
}

fn roots(rs: &[u64]) -> Vec<String> {
    rs.iter()
        .flat_map(|r| ["--root".to_string(), format!("{r:#x}")])
        .collect()
}

fn run(cmd: &str, image: &str, extra: &[String]) -> Output {
    let mut args: Vec<&str> = vec![cmd, "--image", image];
    args.extend(extra.iter().map(String::as_str));
    ptwalk(&args)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

#[test]
fn four_level_walks_print_canonical_vas_levels_and_nx() {
    let dir = scratch("long");
    let l = long_image();
    let img = write(&dir, "long.img", &l.mem);
    let args = [roots(&[l.a, l.b]), strs(&["--mode", "x86-64"])].concat();
    let (a, b, k) = (l.a, l.b, l.pdpt_k);
    let refs = ok(&run("walk", &img, &args));
    let want = format!(
        "leaf\t{a:#x}\t0x400000\t0x100000\t0x1000\t0x100027\trw,user\n\
         leaf\t{a:#x}\t0x401000\t0x101000\t0x1000\t0x8000000000101025\tro,user,nx\n\
         leaf\t{a:#x}\t0x600000\t0x200000\t0x200000\t0x2000a3\trw,kernel\n\
         leaf\t{a:#x}\t0xffff888000000000\t0x40000000\t0x40000000\t0x80000000400000a3\trw,kernel,nx\n\
         leaf\t{a:#x}\t0xffff888040005000\t0x105000\t0x1000\t0x105023\trw,kernel\n\
         alias\t{b:#x}\t0xffff888000000000\t0x8000000000\t0x4\t{a:#x}\t0xffff888000000000\t{k:#x}\t{:#x}\n\
         leaf\t{b:#x}\t0xffffffff80000000\t0x400000\t0x200000\t0x4001a1\tro,kernel\n",
        k | DIR | NX
    );
    assert_eq!(refs, want);
    // Following the alias, B sees the kernel half through its NX entry.
    let follow = ok(&run(
        "walk",
        &img,
        &[args.clone(), strs(&["--follow"])].concat(),
    ));
    assert!(
        follow.contains(&format!(
            "leaf\t{b:#x}\t0xffff888040005000\t0x105000\t0x1000\t0x105023\trw,kernel,nx\n"
        )),
        "{follow}"
    );
    assert_eq!(follow.lines().filter(|l| l.starts_with("leaf")).count(), 8);
    // JSON carries the same canonical VAs.
    let json = ok(&run(
        "walk",
        &img,
        &[args.clone(), strs(&["--format", "json"])].concat(),
    ));
    let alias: serde_json::Value = serde_json::from_str(json.lines().nth(5).unwrap()).unwrap();
    assert_eq!(alias["kind"], "alias");
    assert_eq!(alias["va"], "0xffff888000000000");
    assert_eq!(alias["level"], "0x4");
    // A range across the canonical hole is both halves' ends, nothing
    // wrapped: A's 2 MiB page ends where it starts, so only the kernel half.
    let across = ok(&run(
        "walk",
        &img,
        &[
            args.clone(),
            strs(&["--range", "0x800000..0xffff888000001000"]),
        ]
        .concat(),
    ));
    let vas: Vec<&str> = across
        .lines()
        .map(|l| l.split('\t').nth(2).unwrap())
        .collect();
    assert_eq!(
        vas,
        ["0xffff888000000000", "0xffff888000000000"],
        "{across}"
    );
    // An upper-half range start is accepted; a non-canonical one is an
    // error, as is a VA above 4 GiB for i686.
    let upper = ok(&run(
        "walk",
        &img,
        &[
            args.clone(),
            strs(&["--range", "0xffffffff80000000..0xffffffffffffffff"]),
        ]
        .concat(),
    ));
    assert_eq!(upper.lines().count(), 1, "{upper}");
    fails(
        &run(
            "walk",
            &img,
            &[
                args.clone(),
                strs(&["--range", "0x800000000000..0x800000001000"]),
            ]
            .concat(),
        ),
        "--range 0x800000000000..0x800000001000 lies outside the canonical 48-bit address space of x86-64",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn upper_half_translation_and_unaddressable_vas() {
    let dir = scratch("translate");
    let l = long_image();
    let img = write(&dir, "long.img", &l.mem);
    let args = [
        roots(&[l.a, l.b]),
        strs(&[
            "--mode",
            "x86-64",
            "--space",
            "1",
            "0xffff8880_4000_5123",
            "0xffff_8880_1234_5678",
            "0xffff_ffff_8012_3456",
            "0x400000",
        ]),
    ]
    .concat();
    assert_eq!(
        ok(&run("translate", &img, &args)),
        "0xffff888040005123\t0x105123\t0x1000\t0x105023\trw,kernel,nx\n\
         0xffff888012345678\t0x52345678\t0x40000000\t0x80000000400000a3\trw,kernel,nx\n\
         0xffffffff80123456\t0x523456\t0x200000\t0x4001a1\tro,kernel\n\
         0x400000\tunmapped\n"
    );
    // Space 0 reaches the same page table without NX.
    let a = ok(&run(
        "translate",
        &img,
        &[
            roots(&[l.a, l.b]),
            strs(&["--mode", "x86-64", "0xffff888040005000"]),
        ]
        .concat(),
    ));
    assert_eq!(
        a,
        "0xffff888040005000\t0x105000\t0x1000\t0x105023\trw,kernel\n"
    );
    // Non-canonical: checked before anything is printed.
    fails(
        &run(
            "translate",
            &img,
            &[
                roots(&[l.a]),
                strs(&["--mode", "x86-64", "0x400000", "0x0000_8000_0000_0000"]),
            ]
            .concat(),
        ),
        "VA 0x800000000000 lies outside the canonical 48-bit address space of x86-64",
    );
    fails(
        &run(
            "translate",
            &img,
            &[
                roots(&[l.a]),
                strs(&["--mode", "x86-64", "0xff00000000000000"]),
            ]
            .concat(),
        ),
        "VA 0xff00000000000000 lies outside",
    );
    // The same VA is canonical with 5 levels.
    let p5 = 0x7000u64;
    let mut mem = l.mem.clone();
    mem[p5 as usize..p5 as usize + 8].copy_from_slice(&(l.a | DIR).to_le_bytes());
    let img5 = write(&dir, "la57.img", &mem);
    assert_eq!(
        ok(&run(
            "translate",
            &img5,
            &[
                roots(&[p5]),
                strs(&["--mode", "x86-64-la57", "0xff00000000000000", "0x400000"]),
            ]
            .concat(),
        )),
        "0xff00000000000000\tunmapped\n0x400000\t0x100000\t0x1000\t0x100027\trw,user\n"
    );
    // --no-pse is for i686.
    fails(
        &run(
            "translate",
            &img,
            &[roots(&[l.a]), strs(&["--mode", "pae", "--no-pse", "0"])].concat(),
        ),
        "--no-pse is for i686 paging",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The 5-level image: the 4-level one below two PML5s, which share a
/// PML4 through entry 511 (a level-5 alias) and reach A's and B's PML4s
/// through entry 0.
fn la57_image() -> (Vec<u8>, [u64; 2], u64) {
    let l = long_image();
    let mut m = Builder {
        buf: l.mem,
        next: 0x10_0000 - 0x3000,
    };
    let (p5a, p5b, k4) = (m.alloc(), m.alloc(), m.alloc());
    m.put(p5a, 0, l.a | DIR);
    m.put(p5b, 0, l.b | DIR);
    m.put(p5a, 511, k4 | DIR);
    m.put(p5b, 511, k4 | DIR);
    m.put(k4, 511, l.pdpt_k | DIR);
    (m.buf, [p5a, p5b], k4)
}

/// The last page of the x86-64 space: `map`'s JSON gives its range's end
/// exactly (2^64), the TSV as QEMU's `info mem` does (0).
#[test]
fn a_range_ending_at_the_top_of_the_space() {
    let dir = scratch("top");
    let mut m = Builder::new(0x20_0000);
    let (pml4, pdpt, pd, pt) = (m.alloc(), m.alloc(), m.alloc(), m.alloc());
    m.put(pml4, 511, pdpt | DIR);
    m.put(pdpt, 511, pd | DIR);
    m.put(pd, 511, pt | DIR);
    m.put(pt, 510, 0x10_0000 | P | A);
    m.put(pt, 511, 0x10_1000 | P | A);
    let img = write(&dir, "top.img", &m.buf);
    let args = [roots(&[pml4]), strs(&["--mode", "x86-64"])].concat();
    let json = ok(&run(
        "map",
        &img,
        &[args.clone(), strs(&["--format", "json"])].concat(),
    ));
    let s: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let r = &s["ranges"][0];
    assert_eq!(r["va"], "0xffffffffffffe000", "{json}");
    assert_eq!(r["end"], "0x10000000000000000", "{json}");
    assert_eq!(r["size"], "0x2000", "{json}");
    let tsv = ok(&run("map", &img, &args));
    assert!(tsv.contains("ffffffffffffe000-0000000000000000"), "{tsv}");
}

#[test]
fn five_level_walks_alias_at_the_top() {
    let dir = scratch("la57");
    let (mem, [p5a, p5b], k4) = la57_image();
    let img = write(&dir, "la57.img", &mem);
    let args = [roots(&[p5a, p5b]), strs(&["--mode", "x86-64-la57"])].concat();
    let refs = ok(&run("walk", &img, &args));
    // The shared PML4's entry 511 maps the top 512 GiB of the space.
    let top = canonical((511 << 48) | (511 << 39), 57);
    assert_eq!(top, 0xffff_ff80_0000_0000);
    let alias = format!(
        "alias\t{p5b:#x}\t{:#x}\t0x1000000000000\t0x5\t{p5a:#x}\t{:#x}\t{k4:#x}\t{:#x}\n",
        canonical(511 << 48, 57),
        canonical(511 << 48, 57),
        k4 | DIR
    );
    assert!(refs.contains(&alias), "{refs}");
    // Following it, both spaces see the kernel PDPT's pages at the top.
    let follow = ok(&run(
        "walk",
        &img,
        &[args.clone(), strs(&["--follow"])].concat(),
    ));
    for r in [p5a, p5b] {
        assert!(
            follow.contains(&format!(
                "leaf\t{r:#x}\t{top:#x}\t0x40000000\t0x40000000\t0x80000000400000a3\trw,kernel,nx\n"
            )),
            "{follow}"
        );
    }
    // The 4-level spaces' upper halves are lower-half VAs here (bit 47
    // is not the sign): the kernel PDPT, reached again from the top.
    assert!(refs.contains(&format!(
        "leaf\t{p5a:#x}\t0x888040005000\t0x105000\t0x1000\t0x105023\trw,kernel\n"
    )));
    assert!(refs.contains(&format!(
        "alias\t{p5a:#x}\t0xffffff8000000000\t0x8000000000\t0x4\t{p5a:#x}\t0x888000000000\t"
    )));
    assert!(!refs.contains("0xffff888"), "{refs}");
    let counts = ok(&run(
        "walk",
        &img,
        &[args.clone(), strs(&["--follow", "--format", "count"])].concat(),
    ));
    // A: 5 lower + 2 at the top; B: its 2 MiB page, 2 through its PML4
    // entry 273, 2 at the top.
    assert_eq!(counts, "leaf\t12\nalias\t0\ninvalid\t0\nfault\t0\n");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The PAE image: two 32-byte PDPTs in one page (0x1020 and 0x1040),
/// sharing the kernel PD through PDPTE 3 (`0xC000_0000`); a 2 MiB page, a
/// page table, a user page with NX.
fn pae_image() -> (Vec<u8>, [u64; 2], u64) {
    let mut m = Builder::new(0x60_0000);
    let page = m.alloc();
    let (ra, rb) = (page + 0x20, page + 0x40);
    let (pd_u, pt_u, pd_k, pt_k) = (m.alloc(), m.alloc(), m.alloc(), m.alloc());
    // PDPTEs carry only P (and the accessed bit QEMU sets).
    m.put(ra, 0, pd_u | P | A);
    m.put(pd_u, 0x40, pt_u | DIR); // VA 0x0800_0000
    m.put(pt_u, 0x48, 0x10_8000 | P | US | A | NX); // VA 0x0804_8000
    m.put(pt_u, 0x49, 0x10_9000 | P | US | RW | A);
    m.put(ra, 3, pd_k | P);
    m.put(rb, 3, pd_k | P | A);
    m.put(pd_k, 0, 0x20_0000 | P | RW | A | PS); // VA 0xC000_0000, 2 MiB
    m.put(pd_k, 1, pt_k | DIR);
    m.put(pt_k, 2, 0x10_2000 | P | RW | A | NX); // VA 0xC020_2000
    (m.buf, [ra, rb], pd_k)
}

#[test]
fn pae_roots_need_not_be_page_aligned() {
    let dir = scratch("pae");
    let (mem, [ra, rb], pd_k) = pae_image();
    let img = write(&dir, "pae.img", &mem);
    let args = [roots(&[ra, rb]), strs(&["--mode", "pae"])].concat();
    assert_eq!(
        ok(&run("walk", &img, &args)),
        format!(
            "leaf\t{ra:#x}\t0x8048000\t0x108000\t0x1000\t0x8000000000108025\tro,user,nx\n\
             leaf\t{ra:#x}\t0x8049000\t0x109000\t0x1000\t0x109027\trw,user\n\
             leaf\t{ra:#x}\t0xc0000000\t0x200000\t0x200000\t0x2000a3\trw,kernel\n\
             leaf\t{ra:#x}\t0xc0202000\t0x102000\t0x1000\t0x8000000000102023\trw,kernel,nx\n\
             alias\t{rb:#x}\t0xc0000000\t0x40000000\t0x3\t{ra:#x}\t0xc0000000\t{pd_k:#x}\t{:#x}\n",
            pd_k | P | A
        )
    );
    let t = ok(&run(
        "translate",
        &img,
        &[
            args.clone(),
            strs(&["--space", "1", "0xc0202abc", "0xc0123456", "0x8048000"]),
        ]
        .concat(),
    ));
    assert_eq!(
        t,
        "0xc0202abc\t0x102abc\t0x1000\t0x8000000000102023\trw,kernel,nx\n\
         0xc0123456\t0x323456\t0x200000\t0x2000a3\trw,kernel\n\
         0x8048000\tunmapped\n"
    );
    fails(
        &run(
            "translate",
            &img,
            &[args.clone(), strs(&["0x100000000"])].concat(),
        ),
        "VA 0x100000000 lies outside the 32-bit address space of pae",
    );
    // The same roots read as i686 page directories are one table twice.
    fails(
        &run("walk", &img, &roots(&[ra, rb])),
        "names the same table as root 0",
    );
    // A root is its 32 bytes (CR3's low 5 bits are flags): the last ones
    // of an image are a root, the next ones are not.
    let short = write(&dir, "short.img", &mem[..0x2000]);
    let last = run(
        "walk",
        &short,
        &[roots(&[0x1ff8]), strs(&["--mode", "pae"])].concat(),
    );
    assert!(ok(&last).is_empty() && stderr(&last).is_empty());
    fails(
        &run(
            "walk",
            &short,
            &[roots(&[0x2000]), strs(&["--mode", "pae"])].concat(),
        ),
        "root 0x2000 lies outside the image",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn map_and_tables_in_every_mode() {
    let dir = scratch("map");
    let l = long_image();
    let img = write(&dir, "long.img", &l.mem);
    let args = [roots(&[l.a, l.b]), strs(&["--mode", "x86-64"])].concat();
    let map = ok(&run("map", &img, &args));
    let spaces: Vec<&str> = map.split("\n\n").collect();
    assert_eq!(spaces.len(), 2, "{map}");
    let rows = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let a = rows(spaces[0]);
    let (ra, rb) = (format!("{:#x}", l.a), format!("{:#x}", l.b));
    assert_eq!(a[0], ["space", ra.as_str()]);
    let want: [&[&str]; 5] = [
        &[
            "0000000000400000-0000000000401000",
            "0x1000",
            "0x100000",
            "urw",
            "4K",
        ],
        &[
            "0000000000401000-0000000000402000",
            "0x1000",
            "0x101000",
            "ur-,nx",
            "4K",
        ],
        &[
            "0000000000600000-0000000000800000",
            "0x200000",
            "0x200000",
            "-rw",
            "2M",
        ],
        &[
            "ffff888000000000-ffff888040000000",
            "0x40000000",
            "0x40000000",
            "-rw,nx",
            "1G",
        ],
        &[
            "ffff888040005000-ffff888040006000",
            "0x1000",
            "0x105000",
            "-rw",
            "4K",
        ],
    ];
    for (got, want) in a[2..7].iter().zip(want) {
        assert_eq!(got, want, "{}", spaces[0]);
    }
    assert_eq!(
        a[7].join(" "),
        format!(
            "summary {ra}: mapped 0x40203000 bytes (1050636 KiB) in 5 ranges, 5 private and 1 shared tables, 0 aliases, 0 faults"
        )
    );
    let b = rows(spaces[1]);
    let via: [&[&str]; 3] = [
        &[
            "ffff888000000000-ffff888040000000",
            "0x40000000",
            "0x40000000",
            "-rw,nx",
            "1G",
            "via",
            &ra,
            "at",
            "ffff888000000000",
        ],
        &[
            "ffff888040005000-ffff888040006000",
            "0x1000",
            "0x105000",
            "-rw,nx",
            "4K",
            "via",
            &ra,
            "at",
            "ffff888040005000",
        ],
        &[
            "ffffffff80000000-ffffffff80200000",
            "0x200000",
            "0x400000",
            "-r-,G",
            "2M",
        ],
    ];
    for (got, want) in b[2..5].iter().zip(via) {
        assert_eq!(got, want, "{}", spaces[1]);
    }
    assert!(b[5][0] == "summary", "{}", spaces[1]);
    // JSON counts A's tables per level: its own PDPT, PDs and PTs, and
    // the kernel PDPT it shares with B.
    let json = ok(&run(
        "map",
        &img,
        &[args.clone(), strs(&["--format", "json"])].concat(),
    ));
    let s0: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        s0["levels"],
        serde_json::json!([
            {"level": 1, "private_tables": 2, "shared_tables": 0},
            {"level": 2, "private_tables": 2, "shared_tables": 0},
            {"level": 3, "private_tables": 1, "shared_tables": 1},
        ])
    );
    // tables: the kernel PDPT (level 3), reached by both at the same VA;
    // its PD and PT are A's alone.
    let t = ok(&run("tables", &img, &args));
    assert_eq!(
        t,
        format!(
            "{:#x}\t3\t{ra}\t0xffff888000000000\t{rb}@0xffff888000000000\n",
            l.pdpt_k
        )
    );
    // 5-level: the shared PML4 at level 4, at the top of the space.
    let (mem, [p5a, p5b], k4) = la57_image();
    let img5 = write(&dir, "la57.img", &mem);
    let t = ok(&run(
        "tables",
        &img5,
        &[roots(&[p5a, p5b]), strs(&["--mode", "x86-64-la57"])].concat(),
    ));
    assert!(
        t.contains(&format!(
            "{k4:#x}\t4\t{p5a:#x}\t0xffff000000000000\t{p5b:#x}@0xffff000000000000\n"
        )),
        "{t}"
    );
    // The kernel PDPT: under PML4 entry 273 of A (its owner), entry 511
    // of the shared PML4 (in A first), and entry 273 of B.
    assert!(
        t.contains(&format!(
            "{:#x}\t3\t{p5a:#x}\t0x888000000000\t{p5a:#x}@0xffffff8000000000 {p5b:#x}@0x888000000000\n",
            l.pdpt_k
        )),
        "{t}"
    );
    let json = ok(&run(
        "map",
        &img5,
        &[
            roots(&[p5a, p5b]),
            strs(&["--mode", "x86-64-la57", "--format", "json"]),
        ]
        .concat(),
    ));
    let s0: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let ranges = s0["ranges"].as_array().unwrap();
    let giant = ranges[ranges.len() - 2].clone();
    assert_eq!(giant["va"], "0xffffff8000000000");
    assert_eq!(giant["end"], "0xffffff8040000000");
    assert_eq!(giant["page"], "1G");
    // PAE: the shared PD at level 2.
    let (mem, [ra, rb], pd_k) = pae_image();
    let imgp = write(&dir, "pae.img", &mem);
    let t = ok(&run(
        "tables",
        &imgp,
        &[roots(&[ra, rb]), strs(&["--mode", "pae"])].concat(),
    ));
    assert_eq!(
        t,
        format!("{pd_k:#x}\t2\t{ra:#x}\t0xc0000000\t{rb:#x}@0xc0000000\n")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn compaction_verifies_in_every_mode() {
    let dir = scratch("compact");
    let l = long_image();
    let (la57, p5, _) = la57_image();
    let (pae, pr, _) = pae_image();
    let cases: [(&str, &[u8], Vec<u64>, usize); 3] = [
        ("x86-64", &l.mem, vec![l.a, l.b], 1),
        ("x86-64-la57", &la57, p5.to_vec(), 3),
        ("pae", &pae, pr.to_vec(), 1),
    ];
    for (mode, mem, rs, aliases) in cases {
        let img = write(&dir, &format!("{mode}-in.img"), mem);
        let out = dir.join(mode);
        let o = ok(&run(
            "compact",
            &img,
            &[
                roots(&rs),
                strs(&["--mode", mode, "--verify", "-o", out.to_str().unwrap()]),
            ]
            .concat(),
        ));
        assert!(o.contains("verify\tok"), "{mode}: {o}");
        assert!(
            o.contains(&format!("aliases_linked\t{aliases}\n")),
            "{mode}: {o}"
        );
        // The snapshot walks in the same mode like the input.
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.with_extension("json")).unwrap()).unwrap();
        let new: Vec<u64> = side["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| u64::from_str_radix(r.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
            .collect();
        let snap = out.with_extension("img");
        let walk = |img: &str, rs: &[u64], base: &str| {
            let o = ok(&run(
                "walk",
                img,
                &[
                    roots(rs),
                    strs(&["--mode", mode, "--follow", "--base", base]),
                ]
                .concat(),
            ));
            // VA, size and access per space index (PAs and entries move).
            o.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    let s = rs.iter().position(|r| format!("{r:#x}") == f[1]).unwrap();
                    format!("{s} {} {} {}", f[2], f[4], f[6])
                })
                .collect::<Vec<_>>()
        };
        let base = side["base"].as_str().unwrap().to_string();
        // A raw image has no mode of its own: OUT.json says which.
        assert_eq!(side["mode"].as_str(), Some(mode), "{side}");
        let before = walk(&img, &rs, "0");
        assert!(before.len() >= 6, "{mode}: {before:?}");
        assert_eq!(walk(snap.to_str().unwrap(), &new, &base), before, "{mode}");
    }
    // --skip takes upper-half VAs: the kernel page table's page goes, in
    // both spaces (B reaches it through A's tables), the rest stays.
    let img = write(&dir, "skip-in.img", &l.mem);
    let out = dir.join("skip");
    let o = ok(&run(
        "compact",
        &img,
        &[
            roots(&[l.a, l.b]),
            strs(&[
                "--mode",
                "x86-64",
                "--skip",
                "0xffff888040005000..0xffff888040006000",
                "--verify",
                "-o",
                out.to_str().unwrap(),
            ]),
        ]
        .concat(),
    ));
    assert!(o.contains("verify\tok"), "{o}");
    assert!(o.contains("pages_skipped\t1\n"), "{o}");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.with_extension("json")).unwrap()).unwrap();
    let new: Vec<String> = side["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let t = ok(&run(
        "translate",
        out.with_extension("img").to_str().unwrap(),
        &[
            strs(&["--base", side["base"].as_str().unwrap(), "--mode", "x86-64"]),
            new.iter()
                .flat_map(|r| ["--root".to_string(), r.clone()])
                .collect(),
            strs(&["--space", "1", "0xffff888040005000", "0xffffffff80000000"]),
        ]
        .concat(),
    ));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "0xffff888040005000\tunmapped", "{t}");
    assert!(lines[1].ends_with("\tro,kernel"), "{t}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// One vCPU's control registers for a QEMU note.
const PG: u64 = 0x8005_0033;
const CR4_PAE: u64 = 0x6b0;
const CR4_LA57: u64 = CR4_PAE | (1 << 12);

#[test]
fn a_core_alone_walks_in_its_vcpus_mode() {
    let dir = scratch("core");
    let l = long_image();
    let raw = write(&dir, "long.img", &l.mem);
    // cpu0 runs B with PCID 5 and the no-flush bit; cpu1 runs A.
    let cpus = [
        Cpu {
            cr0: PG,
            cr3: l.b | 5 | (1 << 63),
            cr4: CR4_PAE | (1 << 17),
        },
        Cpu {
            cr0: PG,
            cr3: l.a,
            cr4: CR4_PAE,
        },
    ];
    let f = write(
        &dir,
        "long.elf",
        &core(true, elf::EM_X86_64, &cpus, &[(0, &l.mem)]),
    );
    let want_long = ok(&run(
        "walk",
        &raw,
        &[roots(&[l.b, l.a]), strs(&["--mode", "x86-64"])].concat(),
    ));
    for extra in [vec![], strs(&["--follow"])] {
        let o = run("walk", &f, &extra);
        let want = ok(&run(
            "walk",
            &raw,
            &[
                roots(&[l.b, l.a]),
                strs(&["--mode", "x86-64"]),
                extra.clone(),
            ]
            .concat(),
        ));
        assert_eq!(ok(&o), want, "{extra:?}");
        assert!(want.contains("0xffff888040005000"), "{want}");
        assert_eq!(
            stderr(&o),
            format!(
                "ptwalk: roots from the vCPUs of the ELF64 core (1 segment): {:#x} (cpu0) {:#x} (cpu1); mode x86-64\n",
                l.b, l.a
            )
        );
    }
    // translate and map take them too.
    let t = ok(&run("translate", &f, &strs(&["0xffffffff80000000"])));
    assert_eq!(
        t,
        "0xffffffff80000000\t0x400000\t0x200000\t0x4001a1\tro,kernel\n"
    );
    // --space is checked before the roots are named: one line.
    fails(
        &run("translate", &f, &strs(&["--space", "2", "0"])),
        "there is no space 2: 2 roots",
    );
    let m = ok(&run("map", &f, &[]));
    assert!(m.contains(&format!("space {:#x} (cpu0)", l.b)), "{m}");
    // An explicit mode that contradicts the notes is followed, and said.
    let o = run(
        "walk",
        &f,
        &strs(&["--mode", "x86-64-la57", "--format", "count"]),
    );
    ok(&o);
    assert!(
        stderr(&o).ends_with(
            "; mode x86-64-la57: as --mode asks, though the vCPUs use 4-level long mode\n"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
    let o = run(
        "walk",
        &f,
        &[
            roots(&[l.a]),
            strs(&["--mode", "x86-64-la57", "--format", "count"]),
        ]
        .concat(),
    );
    ok(&o);
    assert_eq!(
        stderr(&o),
        "ptwalk: mode x86-64-la57: as --mode asks, though the vCPUs use 4-level long mode\n"
    );
    // vCPUs that disagree (one with CR4.LA57): only --mode can choose.
    let split = [
        cpus[0],
        Cpu {
            cr4: CR4_LA57,
            ..cpus[1]
        },
    ];
    let f = write(
        &dir,
        "split.elf",
        &core(true, elf::EM_X86_64, &split, &[(0, &l.mem)]),
    );
    fails(
        &run("walk", &f, &[]),
        "disagree on the paging mode (cpu0 4-level long mode, cpu1 5-level long mode (CR4.LA57)): give --mode",
    );
    let o = run("walk", &f, &strs(&["--mode", "x86-64"]));
    assert_eq!(ok(&o), want_long);
    assert!(
        stderr(&o).ends_with("; mode x86-64: as --mode asks; the vCPUs disagree: cpu0 4-level long mode, cpu1 5-level long mode (CR4.LA57)\n"),
        "{}",
        stderr(&o)
    );
    // An x86-64 core without notes (kdump) is long mode, said as a guess.
    let bare = write(
        &dir,
        "bare.elf",
        &core(true, elf::EM_X86_64, &[], &[(0, &l.mem)]),
    );
    let o = run("walk", &bare, &roots(&[l.a]));
    assert_eq!(
        ok(&o),
        ok(&run(
            "walk",
            &raw,
            &[roots(&[l.a]), strs(&["--mode", "x86-64"])].concat()
        ))
    );
    assert!(stderr(&o).contains("mode x86-64: taken for an x86-64 core without vCPU registers"));
    // 5 levels from CR4.LA57.
    let (mem, [p5a, p5b], _) = la57_image();
    let cpus = [
        Cpu {
            cr0: PG,
            cr3: p5a,
            cr4: CR4_LA57,
        },
        Cpu {
            cr0: PG,
            cr3: p5b | 0x18,
            cr4: CR4_LA57,
        },
    ];
    let f = write(
        &dir,
        "la57.elf",
        &core(true, elf::EM_X86_64, &cpus, &[(0, &mem)]),
    );
    let raw5 = write(&dir, "la57.img", &mem);
    let o = run("walk", &f, &[]);
    assert_eq!(
        ok(&o),
        ok(&run(
            "walk",
            &raw5,
            &[roots(&[p5a, p5b]), strs(&["--mode", "x86-64-la57"])].concat()
        ))
    );
    assert!(
        stderr(&o).ends_with("; mode x86-64-la57\n"),
        "{}",
        stderr(&o)
    );
    // compact takes them too, and its snapshot verifies.
    let out = dir.join("la57-snap");
    let c = ok(&run(
        "compact",
        &f,
        &strs(&["--verify", "-o", out.to_str().unwrap()]),
    ));
    assert!(
        c.contains("aliases_linked\t3\n") && c.contains("verify\tok"),
        "{c}"
    );
    // PAE: an EM_386 core whose vCPU has CR4.PAE; CR3's low 5 bits are flags.
    let (mem, [ra, rb], _) = pae_image();
    let cpus = [
        Cpu {
            cr0: PG,
            cr3: ra | 0x18,
            cr4: CR4_PAE,
        },
        Cpu {
            cr0: PG,
            cr3: rb,
            cr4: CR4_PAE,
        },
    ];
    let f = write(
        &dir,
        "pae.elf",
        &core(true, elf::EM_386, &cpus, &[(0, &mem)]),
    );
    let rawp = write(&dir, "pae.img", &mem);
    let o = run("walk", &f, &[]);
    assert_eq!(
        ok(&o),
        ok(&run(
            "walk",
            &rawp,
            &[roots(&[ra, rb]), strs(&["--mode", "pae"])].concat()
        ))
    );
    assert_eq!(
        stderr(&o),
        format!(
            "ptwalk: roots from the vCPUs of the ELF64 core (1 segment): {ra:#x} (cpu0) {rb:#x} (cpu1); mode pae\n"
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Roots listed by `roots` (the first column).
fn listed(tsv: &str) -> Vec<String> {
    tsv.lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

#[test]
fn roots_and_all_roots_in_every_mode() {
    let dir = scratch("roots");
    // A long-mode core: its vCPU's root (CR3 flags dropped), and
    // --all-roots walks what `roots` lists.
    let l = long_image();
    let cpus = [Cpu {
        cr0: PG,
        cr3: l.a | 0x18,
        cr4: CR4_PAE,
    }];
    let f = write(
        &dir,
        "long.elf",
        &core(true, elf::EM_X86_64, &cpus, &[(0, &l.mem)]),
    );
    let found = ok(&run("roots", &f, &[]));
    assert!(found.starts_with(&format!("{:#x}\tcpu0\t", l.a)), "{found}");
    let raw = write(&dir, "long.img", &l.mem);
    let o = run("walk", &f, &strs(&["--all-roots"]));
    let listed_roots: Vec<u64> = listed(&found)
        .iter()
        .map(|r| u64::from_str_radix(r.trim_start_matches("0x"), 16).unwrap())
        .collect();
    assert_eq!(
        ok(&o),
        ok(&run(
            "walk",
            &raw,
            &[roots(&listed_roots), strs(&["--mode", "x86-64"])].concat()
        ))
    );
    assert!(stderr(&o).ends_with("; mode x86-64\n"), "{}", stderr(&o));
    // PAE: PDPTs at 32-byte slots of one page, found like a known one.
    let (mem, [ra, rb], _) = pae_image();
    let rawp = write(&dir, "pae.img", &mem);
    let found = ok(&run(
        "roots",
        &rawp,
        &strs(&["--mode", "pae", "--like", &format!("{ra:#x}")]),
    ));
    assert_eq!(
        listed(&found),
        [format!("{ra:#x}"), format!("{rb:#x}")],
        "{found}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
