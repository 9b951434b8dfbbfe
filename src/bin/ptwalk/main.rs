//! `ptwalk`: walk, translate and explain x86 page tables in a raw
//! physical-memory image. See the README for the output formats.
//!
//! Errors: every failure is one line on stderr, `ptwalk: ` and what is
//! wrong (file names quoted, control characters escaped), with exit status
//! 2; usage errors are clap's own messages, whole, also with status 2; a
//! verification that finds differences exits 1. Output cut short because
//! its reader went away (`| head`) ends quietly with status 0.

mod compact;
mod demo;
mod format;
mod input;
mod numbers;
mod pair;

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ptwalk::{
    GrowableOwners, I686, Image, PagingMode, PhysAddr, PhysMem, SpaceId, Spaces, VirtAddr, Walk,
};

use format::Format;
use input::Bytes;
use numbers::{parse_addr, parse_range, parse_space};

#[derive(Parser)]
#[command(
    name = "ptwalk",
    version,
    about = "Alias-aware x86 page-table walker",
    arg_required_else_help = true
)]
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
    #[arg(long, value_name = "PA", default_value = "0", value_parser = parse_addr, allow_hyphen_values = true)]
    base: u64,
    /// Page-table root (CR3) of an address space; repeat for several, in
    /// order of primacy.
    #[arg(long = "root", value_name = "PA", required = true, value_parser = parse_addr, allow_hyphen_values = true)]
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
        #[arg(long, value_name = "START..END", value_parser = parse_range, allow_hyphen_values = true)]
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
        #[arg(long, value_name = "START..END", value_parser = parse_range, allow_hyphen_values = true)]
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
        #[arg(long, value_name = "PA", value_parser = parse_addr, allow_hyphen_values = true)]
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
        #[arg(long, value_name = "N", default_value = "0", value_parser = parse_space, allow_hyphen_values = true)]
        space: u32,
        // `allow_negative_numbers` (`-5` reaches the parser and is refused
        // there), not `allow_hyphen_values`, which would take options
        // written after the VAs as VAs.
        /// Virtual addresses.
        #[arg(value_name = "VA", required = true, value_parser = parse_addr, allow_negative_numbers = true)]
        vas: Vec<u64>,
    },
}

/// Why a run failed, decided by what happened (never by an error's text).
enum Failure {
    /// Bad input or a failed operation: one line on stderr, exit status 2.
    Error(String),
    /// `compact --verify` found differences (already reported): exit 1.
    VerifyFailed,
    /// One line on stderr and this exit status (e.g. 130 after SIGINT).
    Status(String, u8),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.to_string())
    }
}

/// Standard output, noting whether its reader went away (`EPIPE`, as in
/// `ptwalk walk … | head`). A run whose output stopped that way ends
/// quietly with status 0: the reader chose to stop reading.
struct Stdout<W> {
    inner: W,
    reader_gone: bool,
}

impl<W: Write> Stdout<W> {
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.reader_gone = true;
            }
        }
        r
    }
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// `msg` on one line: control characters (a newline in a file name, say)
/// are escaped, so no message can forge a second line. Paths are already
/// quoted where this program formats them; this also covers messages
/// formatted elsewhere.
fn one_line(msg: &str) -> String {
    let mut line = String::with_capacity(msg.len());
    for c in msg.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// Prints a clap error or help as clap does, except that an argument
/// quoted in it (`invalid value '…'`, `unexpected argument '…'`) has its
/// control characters escaped: the argument cannot forge lines.
fn print_clap_error(e: &clap::Error) {
    use clap::error::ContextValue;
    let forged: Vec<&str> = e
        .context()
        .flat_map(|(_, v)| match v {
            ContextValue::String(s) => vec![s.as_str()],
            ContextValue::Strings(v) => v.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        })
        .filter(|s| s.contains(char::is_control))
        .collect();
    if forged.is_empty() {
        let _ = e.print();
        return;
    }
    let mut text = e.render().to_string();
    for s in forged {
        text = text.replace(&format!("'{s}'"), &format!("'{}'", one_line(s)));
    }
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's message as clap prints it, whole (usage errors name the
            // missing arguments and suggest fixes; a bare `ptwalk` prints the
            // help): stdout and status 0 for --help/--version, stderr and
            // status 2 otherwise.
            print_clap_error(&e);
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let mut out = BufWriter::with_capacity(
        1 << 16,
        Stdout {
            inner: io::stdout().lock(),
            reader_gone: false,
        },
    );
    let result = run(cli.cmd, &mut out).and_then(|()| out.flush().map_err(Failure::from));
    if out.get_ref().reader_gone {
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::VerifyFailed) => ExitCode::from(1),
        Err(Failure::Error(msg)) => {
            // Nowhere to report a failure to write stderr itself.
            let _ = writeln!(io::stderr().lock(), "ptwalk: {}", one_line(&msg));
            ExitCode::from(2)
        }
        Err(Failure::Status(msg, code)) => {
            let _ = writeln!(io::stderr().lock(), "ptwalk: {}", one_line(&msg));
            ExitCode::from(code)
        }
    }
}

/// Loads the image and checks every root table lies inside it.
fn open(args: &ImageArgs) -> Result<(Image<Bytes>, Vec<PhysAddr>), Failure> {
    let mem = input::load(&args.image, args.base).map_err(Failure::Error)?;
    let roots: Vec<PhysAddr> = args.roots.iter().map(|&r| PhysAddr(r)).collect();
    for r in &roots {
        if mem.lend(*r, 4096).is_err() {
            return Err(Failure::Error(format!(
                "root {r} lies outside the image {:?} ({:#x}..{:#x})",
                args.image,
                mem.base().0,
                mem.end()
            )));
        }
    }
    Ok((mem, roots))
}

/// Whether the paging mode can address `va` (i686: below 2^32).
const fn addressable(va: u64) -> bool {
    let bits = <I686 as PagingMode>::VA_BITS;
    bits >= 64 || va >> bits == 0
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
            if let Some((a, b)) = range {
                if a < b && !addressable(a) {
                    return Err(Failure::Error(format!(
                        "--range {a:#x}..{b:#x} lies outside the {}-bit address space of i686",
                        <I686 as PagingMode>::VA_BITS
                    )));
                }
            }
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
                base: img.base,
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
            // compact's messages come as text; `main` makes them one line.
            let failure = |(msg, code): compact::Failure| match code {
                2 => Failure::Error(msg),
                _ => Failure::Status(msg, code),
            };
            match compact::run(job, out).map_err(failure)? {
                true => Ok(()),
                false => Err(Failure::VerifyFailed),
            }
        }
        Cmd::Translate { img, space, vas } => {
            // Every VA is checked before anything is printed.
            if let Some(va) = vas.iter().find(|&&va| !addressable(va)) {
                return Err(Failure::Error(format!(
                    "VA {va:#x} lies outside the {}-bit address space of i686",
                    <I686 as PagingMode>::VA_BITS
                )));
            }
            let (mem, roots) = open(&img)?;
            let spaces = Spaces::new(&mem, &roots)?.with_mode(I686 { pse: !img.no_pse });
            for va in vas {
                let t = spaces.translate(SpaceId(space), VirtAddr(va))?;
                format::translation(VirtAddr(va), &t, out)?;
            }
            Ok(())
        }
    }
}
