//! `ptwalk`: walk, translate and explain x86 page tables in a raw
//! physical-memory image. See the README for the output formats.

mod compact;
mod demo;
mod format;
mod pair;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ptwalk::{GrowableOwners, I686, Image, PhysAddr, PhysMem, SpaceId, Spaces, VirtAddr, Walk};

use format::Format;

#[derive(Parser)]
#[command(name = "ptwalk", version, about = "Alias-aware x86 page-table walker")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct ImageArgs {
    /// Raw physical image: byte i is physical address BASE + i.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// Physical address of the image's first byte.
    #[arg(long, value_name = "PA", default_value = "0", value_parser = parse_num)]
    base: u64,
    /// Page-table root (CR3) of an address space; repeat for several, in
    /// order of primacy.
    #[arg(long = "root", value_name = "PA", required = true, value_parser = parse_num)]
    roots: Vec<u64>,
    /// Ignore the PS bit (CR4.PSE clear): no 4 MiB pages.
    #[arg(long)]
    no_pse: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an embedded sample (processes sharing kernel page tables) and
    /// show both consumers side by side.
    Demo,
    /// Print every event of a walk over all roots.
    Walk {
        #[command(flatten)]
        img: ImageArgs,
        /// Only VAs in START..END (END exclusive).
        #[arg(long, value_name = "START..END", value_parser = parse_range)]
        range: Option<(u64, u64)>,
        /// Follow aliases into their owners (what translation sees) instead
        /// of reporting them as references.
        #[arg(long)]
        follow: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Tsv)]
        format: Format,
    },
    /// Rebuild a compact snapshot that keeps shared tables shared: writes
    /// OUT.img (byte i = physical address OUT-BASE + i: data pages, then
    /// tables) and OUT.json (base, new roots in input order, stats).
    Compact {
        #[command(flatten)]
        img: ImageArgs,
        /// Leave START..END (END exclusive) out of every space; repeatable.
        #[arg(long, value_name = "START..END", value_parser = parse_range)]
        skip: Vec<(u64, u64)>,
        /// Turn writable pages copy-on-write (clear RW, set bit 9).
        #[arg(long)]
        cow: bool,
        /// Map 4 MiB pages as 4 KiB pages.
        #[arg(long)]
        split_large: bool,
        /// Drop pages whose frames lie outside the image (device memory);
        /// by default they are kept at their original address.
        #[arg(long)]
        drop_device_pages: bool,
        /// Keep tables left with no present entry, and their sharing.
        #[arg(long)]
        keep_empty_tables: bool,
        /// Physical address of the output's first byte (default: the lowest
        /// base clear of the device memory the snapshot maps in place).
        #[arg(long, value_name = "PA", value_parser = parse_num)]
        out_base: Option<u64>,
        /// Check the result against the input: same contents and access at
        /// every kept VA, dropped VAs unmapped, same sharing.
        #[arg(long)]
        verify: bool,
        /// Output path prefix.
        #[arg(short, long, value_name = "OUT")]
        out: PathBuf,
    },
    /// Translate VAs in one space (aliases followed).
    Translate {
        #[command(flatten)]
        img: ImageArgs,
        /// Index of the space among the roots.
        #[arg(long, default_value_t = 0)]
        space: usize,
        /// Virtual addresses.
        #[arg(value_name = "VA", required = true, value_parser = parse_num)]
        vas: Vec<u64>,
    },
}

/// A number in hex (`0x…`) or decimal, `_` allowed as a separator.
fn parse_num(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("'{s}' is not a number (use decimal or 0x-prefixed hex)"))
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("'{s}' is not a range (use START..END)"))?;
    let (a, b) = (parse_num(a)?, parse_num(b)?);
    if b < a {
        return Err(format!("range '{s}' ends before it starts"));
    }
    Ok((a, b))
}

/// A failure to report on one line, and the exit status (2 for bad input,
/// 1 for a verification that found differences).
struct Failure {
    msg: String,
    code: u8,
}

impl Failure {
    /// Bad input: exit status 2.
    fn new(msg: String) -> Self {
        Failure { msg, code: 2 }
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::new(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("bad arguments");
            eprintln!("ptwalk: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let result = run(cli.cmd, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { msg, .. }) if msg.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(Failure { msg, code }) => {
            eprintln!("ptwalk: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The image file's bytes, memory-mapped.
enum Bytes {
    Map(memmap2::Mmap),
    Empty,
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Empty => &[],
        }
    }
}

fn load(path: &Path, base: u64) -> Result<Image<Bytes>, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::new(format!("cannot open {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?
        .len();
    let bytes = if len == 0 {
        Bytes::Empty
    } else {
        // SAFETY: the map is read-only and private to this process; ptwalk
        // never writes the file, and a guest image is not expected to change
        // while it is inspected (if it shrank underneath, reads could fault,
        // as with any mapped file).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Failure::new(format!("cannot map {}: {e}", path.display())))?;
        Bytes::Map(map)
    };
    Ok(Image::new(PhysAddr(base), bytes))
}

/// Loads the image and checks every root table lies inside it.
fn open(args: &ImageArgs) -> Result<(Image<Bytes>, Vec<PhysAddr>), Failure> {
    let mem = load(&args.image, args.base)?;
    let roots: Vec<PhysAddr> = args.roots.iter().map(|&r| PhysAddr(r)).collect();
    for r in &roots {
        if mem.lend(*r, 4096).is_err() {
            return Err(Failure::new(format!(
                "root {r} lies outside the image ({:#x}..{:#x})",
                mem.base().0,
                mem.end()
            )));
        }
    }
    Ok((mem, roots))
}

fn run(cmd: Cmd, out: &mut impl Write) -> Result<(), Failure> {
    match cmd {
        Cmd::Demo => demo::run(out).map_err(Failure::from),
        Cmd::Walk {
            img,
            range,
            follow,
            format,
        } => {
            let (mem, roots) = open(&img)?;
            let (start, len) = range.map_or((0, u64::MAX), |(a, b)| (a, b - a));
            let walk = Walk::new(&mem, &roots)?
                .with_mode(I686 { pse: !img.no_pse })
                .with_owners(GrowableOwners::with_capacity(1024))
                .range(start, len);
            if follow {
                format::events(walk.follow_aliases(), &roots, format, out)
            } else {
                format::events(walk.references(), &roots, format, out)
            }
            .map_err(Failure::from)
        }
        Cmd::Compact {
            img,
            skip,
            cow,
            split_large,
            drop_device_pages,
            keep_empty_tables,
            out_base,
            verify,
            out: prefix,
        } => {
            let (mem, roots) = open(&img)?;
            let job = compact::Job {
                mem: &mem,
                mapped: mem.bytes(),
                image: &img.image,
                roots: &roots,
                mode: I686 { pse: !img.no_pse },
                policy: ptwalk::compact::Policy {
                    skip: skip.into_iter().map(|(a, b)| a..b).collect(),
                    cow,
                    split_large,
                    drop_device_pages,
                    keep_empty_tables,
                },
                out_base,
                out: &prefix,
                verify,
            };
            match compact::run(job, out).map_err(|(msg, code)| Failure { msg, code })? {
                true => Ok(()),
                false => Err(Failure {
                    msg: "verification failed".into(),
                    code: 1,
                }),
            }
        }
        Cmd::Translate { img, space, vas } => {
            let (mem, roots) = open(&img)?;
            let spaces = Spaces::new(&mem, &roots)?.with_mode(I686 { pse: !img.no_pse });
            let space = u32::try_from(space).map_err(|_| ptwalk::WalkError::NoSuchSpace(space))?;
            for va in vas {
                let t = spaces.translate(SpaceId(space), VirtAddr(va))?;
                format::translation(VirtAddr(va), &t, out)?;
            }
            Ok(())
        }
    }
}
