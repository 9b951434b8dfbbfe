//! `ptwalk`: walk, translate and explain x86 page tables in a memory dump
//! (a raw physical-memory image, an ELF core or a `LiME` capture). See the
//! README for the inputs and output formats.
//!
//! Errors: every failure is one line on stderr, `ptwalk: ` and what is
//! wrong (file names quoted, control characters escaped), with exit status
//! 2; usage errors are clap's own messages, whole, also with status 2; a
//! verification that finds differences exits 1. Output cut short because
//! its reader went away (`| head`) ends quietly with status 0.

mod compact;
mod demo;
mod dump;
mod format;
mod input;
mod map;
mod modes;
mod numbers;
mod pair;
mod roots;

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ptwalk::{
    GrowableOwners, PagingMode, PhysAddr, PhysMem, Regions, SpaceId, Spaces, VirtAddr, Walk,
};

use dump::{CpuMode, Dump, Kind};
use format::Format;
use modes::{Mode, ModeArg, with_mode};
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

// Doc comments here are --help text: names stay plain ("LiME").
#[allow(clippy::doc_markdown)]
#[derive(clap::Args)]
struct ImageArgs {
    /// Memory dump: an ELF core (QEMU dump-guest-memory, virsh dump
    /// --memory-only, kdump), a LiME capture, or a raw image (byte i is
    /// physical address BASE + i), told apart by their first bytes.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// Physical address of a raw image's first byte (default 0).
    #[arg(long, value_name = "PA", value_parser = parse_addr, allow_hyphen_values = true)]
    base: Option<u64>,
    /// Page-table root (CR3) of an address space; repeat for several, in
    /// order of primacy. Default on a QEMU core: its vCPUs' CR3s.
    #[arg(long = "root", value_name = "PA", value_parser = parse_addr, allow_hyphen_values = true)]
    roots: Vec<u64>,
    /// Paging mode. Default: the vCPUs' on a QEMU core (an explicit
    /// mode overrides them, said on stderr), else i686.
    #[arg(long, value_enum, value_name = "MODE")]
    mode: Option<ModeArg>,
    /// i686 only: ignore the PS bit (CR4.PSE clear): no 4 MiB pages.
    #[arg(long)]
    no_pse: bool,
}

#[allow(clippy::doc_markdown)]
#[derive(Subcommand)]
enum Cmd {
    /// Build an embedded sample (processes sharing kernel page tables) and
    /// show both consumers side by side.
    Demo,
    /// Print every event of a walk over all roots.
    Walk {
        #[command(flatten)]
        img: ImageArgs,
        /// Walk every root `ptwalk roots` finds (instead of --root).
        #[arg(long, conflicts_with = "roots")]
        all_roots: bool,
        /// Only VAs in START..END (canonical VAs, END exclusive; a range
        /// across x86-64's non-canonical hole walks both its ends).
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
        /// Map large pages (2 MiB, 4 MiB, 1 GiB) as 4 KiB pages.
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
        /// Compact every root `ptwalk roots` finds (instead of --root).
        #[arg(long, conflicts_with = "roots")]
        all_roots: bool,
    },
    /// List candidate page-table roots (root tables) in a dump: the
    /// vCPUs' CR3s on a QEMU core, pages whose kernel half matches a known
    /// root's (--like), or, with nothing known, pages that look like one.
    /// One per line: ROOT HOW USER KERNEL SHARED.
    Roots {
        /// Memory dump (ELF core, LiME capture or raw image).
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        /// Physical address of a raw image's first byte (default 0).
        #[arg(long, value_name = "PA", value_parser = parse_addr, allow_hyphen_values = true)]
        base: Option<u64>,
        /// A known root; candidates are pages whose kernel half matches one
        /// (default on a QEMU core: the vCPUs' CR3s). Repeatable.
        #[arg(long = "like", value_name = "ROOT", value_parser = parse_addr, allow_hyphen_values = true)]
        like: Vec<u64>,
        /// Paging mode. Default: the vCPUs' on a QEMU core, else i686.
        #[arg(long, value_enum, value_name = "MODE")]
        mode: Option<ModeArg>,
        /// i686 only: ignore the PS bit (CR4.PSE clear): no 4 MiB pages.
        #[arg(long)]
        no_pse: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = roots::RootsFormat::Tsv)]
        format: roots::RootsFormat,
    },
    /// Print each space's mappings as coalesced ranges, like QEMU's `info
    /// mem` with physical addresses: VA_START-VA_END SIZE PA ACCESS PAGE,
    /// and OWNER for a range reached through another's table; then a
    /// summary line per space.
    Map {
        #[command(flatten)]
        img: ImageArgs,
        /// Map every root `ptwalk roots` finds (instead of --root).
        #[arg(long, conflicts_with = "roots")]
        all_roots: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = map::MapFormat::Tsv)]
        format: map::MapFormat,
    },
    /// List every table reached by more than one (space, VA): TABLE_PA
    /// LEVEL OWNER OWNER_VA, then each SPACE@VA aliasing it.
    Tables {
        #[command(flatten)]
        img: ImageArgs,
        /// Use every root `ptwalk roots` finds (instead of --root).
        #[arg(long, conflicts_with = "roots")]
        all_roots: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = map::MapFormat::Tsv)]
        format: map::MapFormat,
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
    /// A usage error, printed as clap prints it (status 2).
    Usage(clap::Error),
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
        Err(Failure::Usage(e)) => {
            print_clap_error(&e);
            ExitCode::from(2)
        }
        Err(Failure::Status(msg, code)) => {
            let _ = writeln!(io::stderr().lock(), "ptwalk: {}", one_line(&msg));
            ExitCode::from(code)
        }
    }
}

/// An opened input and the roots and mode to walk it with.
struct Setup {
    dump: Dump,
    roots: Vec<PhysAddr>,
    /// How each root was found (`cpu0`, `like`, `scan`; empty if given).
    labels: Vec<String>,
    mode: Mode,
}

/// clap's own usage error for a missing `--root`, where nothing else can
/// say which tables to walk (a raw image, a file that cannot be opened).
fn missing_root(cmd: &str) -> Failure {
    use clap::CommandFactory;
    let mut c = Cli::command();
    let usage = format!("ptwalk {cmd} --image <FILE> --root <PA>...");
    let sub = c
        .find_subcommand_mut(cmd)
        .map(|s| s.clone().override_usage(usage));
    let e = clap::Error::raw(
        clap::error::ErrorKind::MissingRequiredArgument,
        "the following required arguments were not provided:\n  --root <PA>\n\n\
         (only a QEMU core names its roots; `ptwalk roots --image FILE` lists candidates)",
    );
    Failure::Usage(match sub {
        Some(mut s) => e.format(&mut s),
        None => e.format(&mut c),
    })
}

/// The (vCPU index, CR3) of each vCPU with paging on.
type Vcpus = Vec<(usize, u64)>;

/// The paging mode of the core's vCPUs whose paging is on (`Err`: how
/// two of them disagree), and their CR3s (vCPU index, CR3); `None`
/// without QEMU notes.
fn core_cpus(dump: &Dump) -> Option<(Result<CpuMode, String>, Vcpus)> {
    if dump.cpus.is_empty() {
        return None;
    }
    let machine = dump.machine();
    let mut mode = Ok(CpuMode::Off);
    let mut on: Vec<(usize, u64)> = Vec::new();
    for (i, cpu) in dump.cpus.iter().enumerate() {
        let m = CpuMode::of(cpu, machine);
        if m == CpuMode::Off {
            continue;
        }
        match mode {
            Ok(CpuMode::Off) => mode = Ok(m),
            Ok(first) if first != m => {
                let j = on.first().map_or(0, |&(j, _)| j);
                mode = Err(format!("cpu{j} {first}, cpu{i} {m}"));
            }
            _ => {}
        }
        on.push((i, cpu.cr3));
    }
    Some((mode, on))
}

/// Opens the input, takes the mode (see [`dump_mode`]) and the roots
/// (`--root`, else `--all-roots`' scan, else the vCPUs' CR3s as the mode
/// reads them), runs `check` on the mode and roots (before anything is
/// said), and checks every root table lies in memory. Roots not given on the command
/// line, and a mode that is not the vCPUs', are named in one line on
/// stderr.
fn setup(
    args: &ImageArgs,
    all_roots: bool,
    cmd: &str,
    check: impl FnOnce(Mode, &[PhysAddr]) -> Result<(), Failure>,
) -> Result<Setup, Failure> {
    let explicit = !args.roots.is_empty();
    let dump = match Dump::open(&args.image, args.base) {
        Ok(d) => d,
        Err(e) if e.unopened && !explicit && !all_roots => return Err(missing_root(cmd)),
        Err(e) => return Err(Failure::Error(e.msg)),
    };
    let (mode, core, why) = dump_mode(&dump, args.mode, args.no_pse)?;
    let mode_note = match &why {
        Some(why) => format!("mode {}: {why}", mode.name()),
        None => format!("mode {}", mode.name()),
    };
    // What was taken, said once the roots are known to be in memory.
    let mut note = why.as_ref().map(|_| mode_note.clone());
    let (roots, labels): (Vec<PhysAddr>, Vec<String>) = if explicit {
        args.roots
            .iter()
            .map(|&r| (PhysAddr(r), String::new()))
            .unzip()
    } else if all_roots {
        let known = core
            .as_ref()
            .map(|on| vcpu_roots(on, mode))
            .unwrap_or_default();
        let found = find_roots(&dump, mode, &known, true);
        if found.is_empty() {
            return Err(Failure::Error(format!(
                "no candidate root table found in {:?}",
                dump.path
            )));
        }
        note = Some(format!(
            "{} root{} found in the {} ({}); {mode_note}",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            dump.describe(),
            roots::summary(&found),
        ));
        found.iter().map(|c| (c.root, c.how.to_string())).unzip()
    } else {
        match &core {
            Some(on) if on.is_empty() => {
                return Err(Failure::Error(format!(
                    "no vCPU of {:?} has paging on (CR0.PG clear): give --root",
                    dump.path
                )));
            }
            Some(on) => {
                let roots = vcpu_roots(on, mode);
                let names: Vec<String> = roots.iter().map(|(r, c)| format!("{r} ({c})")).collect();
                note = Some(format!(
                    "roots from the vCPUs of the {}: {}; {mode_note}",
                    dump.describe(),
                    names.join(" "),
                ));
                roots.into_iter().unzip()
            }
            None => {
                return Err(match dump.kind {
                    Kind::Raw => missing_root(cmd),
                    Kind::Elf { .. } => Failure::Error(format!(
                        "the core {:?} carries no vCPU registers (no QEMU notes): give --root PA, or --all-roots",
                        dump.path
                    )),
                    Kind::Lime => Failure::Error(format!(
                        "a LiME capture carries no registers: give --root PA for {:?}, or --all-roots",
                        dump.path
                    )),
                });
            }
        }
    };
    check(mode, &roots)?;
    check_roots(&dump, &roots, mode)?;
    if let Some(note) = note {
        eprintln!("ptwalk: {}", one_line(&note));
    }
    Ok(Setup {
        dump,
        roots,
        labels,
        mode,
    })
}

/// The mode to walk `dump` with, the vCPUs (see [`core_cpus`]), and why
/// the mode is not simply the vCPUs' or i686 (to be said on stderr):
///
/// - `--mode` if given (where it contradicts the vCPUs, the user is
///   followed and the reason says so);
/// - else the vCPUs' (where the core has QEMU notes and paging is on);
/// - else x86-64 for an x86-64 core without registers (kdump), which is a
///   long-mode kernel;
/// - else i686.
///
/// `--no-pse` turns 4 MiB pages off in i686 and is refused in other modes.
fn dump_mode(
    dump: &Dump,
    arg: Option<ModeArg>,
    no_pse: bool,
) -> Result<(Mode, Option<Vcpus>, Option<String>), Failure> {
    let cpus = core_cpus(dump);
    let from_cpus = match &cpus {
        Some((Ok(m), _)) => Mode::from_cpu(*m),
        _ => None,
    };
    let (mode, why) = match (arg, &cpus, from_cpus) {
        (None, Some((Err(e), _)), _) => {
            return Err(Failure::Error(format!(
                "the vCPUs of {:?} disagree on the paging mode ({e}): give --mode",
                dump.path
            )));
        }
        (Some(a), Some((Err(e), _)), _) => (
            Mode::from_arg(a, true),
            Some(format!("as --mode asks; the vCPUs disagree: {e}")),
        ),
        (Some(a), _, Some(m)) if m.arg() == a => (m, None),
        (Some(a), _, Some(_)) => (
            Mode::from_arg(a, true),
            cpus.as_ref()
                .and_then(|c| c.0.as_ref().ok())
                .map(|m| format!("as --mode asks, though the vCPUs use {m}")),
        ),
        (Some(a), _, None) => (Mode::from_arg(a, true), None),
        (None, _, Some(m)) => (m, None),
        (None, _, None) if dump.machine() == object::elf::EM_X86_64 => (
            Mode::from_arg(ModeArg::X86_64, true),
            Some(
                "taken for an x86-64 core without vCPU registers (--mode x86-64-la57 for 5-level paging)"
                    .to_string(),
            ),
        ),
        (None, _, None) => (Mode::from_arg(ModeArg::I686, true), None),
    };
    let mode = match mode {
        Mode::I686(m) => Mode::I686(ptwalk::I686 {
            pse: m.pse && !no_pse,
        }),
        _ if no_pse => {
            return Err(Failure::Error(format!(
                "--no-pse is for i686 paging; mode {} always has large pages",
                mode.name()
            )));
        }
        m => m,
    };
    Ok((mode, cpus.map(|(_, on)| on), why))
}

/// The distinct root tables of the vCPUs (CR3 as `mode` reads it), in
/// vCPU order, each with the vCPUs that hold it (`cpu0,cpu3`).
fn vcpu_roots(on: &[(usize, u64)], mode: Mode) -> Vec<(PhysAddr, String)> {
    let mut roots: Vec<(PhysAddr, String)> = Vec::new();
    for &(i, cr3) in on {
        let r = mode.root_table(PhysAddr(cr3));
        match roots.iter_mut().find(|(x, _)| *x == r) {
            Some((_, cpus)) => cpus.push_str(&format!(",cpu{i}")),
            None => roots.push((r, format!("cpu{i}"))),
        }
    }
    roots
}

/// Candidate roots in `dump` in `mode` (see [`roots::find`]).
fn find_roots(
    dump: &Dump,
    mode: Mode,
    known: &[(PhysAddr, String)],
    progress: bool,
) -> Vec<roots::Candidate> {
    with_mode!(mode, m => roots::find(dump, m, known, progress))
}

/// Every root's table must lie in memory.
fn check_roots(dump: &Dump, roots: &[PhysAddr], mode: Mode) -> Result<(), Failure> {
    let images = dump.images();
    let mem = Regions::new(&images)?;
    for r in roots {
        let table = mode.root_table(*r);
        if mem.lend(table, mode.root_bytes()).is_ok() {
            continue;
        }
        return Err(Failure::Error(match dump.kind {
            Kind::Raw => {
                let (lo, hi) = dump
                    .segments
                    .first()
                    .map_or((dump_base(dump), dump_base(dump)), |s| (s.pa, s.end()));
                format!(
                    "root {r} lies outside the image {:?} ({lo:#x}..{hi:#x})",
                    dump.path
                )
            }
            _ => format!(
                "root {r} lies outside the memory of the {} {:?} ({})",
                dump.describe(),
                dump.path,
                dump.ranges()
            ),
        }));
    }
    Ok(())
}

/// A raw image's base (for messages about an empty one).
fn dump_base(dump: &Dump) -> u64 {
    dump.segments.first().map_or(0, |s| s.pa)
}

/// `ptwalk walk` in `mode`: every event over `[start, start + len)`.
#[allow(clippy::too_many_arguments)]
fn walk_in<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    roots: &[PhysAddr],
    (start, len): (u64, u64),
    follow: bool,
    format: Format,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let walk = Walk::new_in(mode, mem, roots)?
        .with_owners(GrowableOwners::with_capacity(1024))
        .range(start, len);
    if follow {
        format::events(walk.follow_aliases(), roots, format, out)
    } else {
        format::events(walk.references(), roots, format, out)
    }
    .map_err(Failure::from)
}

/// `ptwalk translate` in `mode`: each VA in space `space`.
fn translate_in<P: PagingMode, M: PhysMem + ?Sized>(
    mode: P,
    mem: &M,
    roots: &[PhysAddr],
    space: u32,
    vas: &[u64],
    out: &mut impl Write,
) -> Result<(), Failure> {
    let spaces = Spaces::new_in(mode, mem, roots)?;
    for &va in vas {
        let t = spaces.translate(SpaceId(space), VirtAddr(va))?;
        format::translation(VirtAddr(va), &t, out)?;
    }
    Ok(())
}

fn run(cmd: Cmd, out: &mut impl Write) -> Result<(), Failure> {
    match cmd {
        Cmd::Demo => demo::run(out).map_err(Failure::from),
        Cmd::Walk {
            img,
            all_roots,
            range,
            follow,
            format,
        } => {
            let check = |mode: Mode, _: &[PhysAddr]| match range {
                Some((a, b)) if a < b && !mode.addressable(a) => Err(Failure::Error(format!(
                    "--range {a:#x}..{b:#x} lies outside {}",
                    mode.space()
                ))),
                _ => Ok(()),
            };
            let s = setup(&img, all_roots, "walk", check)?;
            let images = s.dump.images();
            let mem = Regions::new(&images)?;
            let range = range.map_or((0, u64::MAX), |(a, b)| (a, b - a));
            with_mode!(s.mode, m => walk_in(m, &mem, &s.roots, range, follow, format, out))
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
            all_roots,
        } => {
            let s = setup(&img, all_roots, "compact", |_, _| Ok(()))?;
            let images = s.dump.images();
            let mem = Regions::new(&images)?;
            let policy = ptwalk::compact::Policy {
                skip: skip.into_iter().map(|(a, b)| a..b).collect(),
                cow,
                split_large,
                drop_device_pages,
                keep_empty_tables,
            };
            // compact's messages come as text; `main` makes them one line.
            let failure = |(msg, code): compact::Failure| match code {
                2 => Failure::Error(msg),
                _ => Failure::Status(msg, code),
            };
            let verified = with_mode!(s.mode, m => compact::run(
                compact::Job {
                    mem: &mem,
                    mapped: s.dump.bytes(),
                    image: &img.image,
                    segments: &s.dump.segments,
                    roots: &s.roots,
                    mode: m,
                    mode_name: s.mode.arg_name(),
                    policy,
                    out_base,
                    out: &prefix,
                    verify,
                },
                out,
            ))
            .map_err(failure)?;
            match verified {
                true => Ok(()),
                false => Err(Failure::VerifyFailed),
            }
        }
        Cmd::Roots {
            image,
            base,
            like,
            mode,
            no_pse,
            format,
        } => {
            let dump = Dump::open(&image, base).map_err(|e| Failure::Error(e.msg))?;
            let (mode, core, why) = dump_mode(&dump, mode, no_pse)?;
            let known: Vec<(PhysAddr, String)> = if like.is_empty() {
                core.as_ref()
                    .map(|on| vcpu_roots(on, mode))
                    .unwrap_or_default()
            } else {
                let like: Vec<PhysAddr> =
                    like.iter().map(|&r| mode.root_table(PhysAddr(r))).collect();
                check_roots(&dump, &like, mode)?;
                let mut known: Vec<(PhysAddr, String)> = Vec::new();
                for r in like {
                    if !known.iter().any(|(k, _)| *k == r) {
                        known.push((r, "like".to_string()));
                    }
                }
                known
            };
            let found = find_roots(&dump, mode, &known, true);
            if let Some(why) = why {
                eprintln!(
                    "ptwalk: {}",
                    one_line(&format!("mode {}: {why}", mode.name()))
                );
            }
            roots::print(&found, format, out).map_err(Failure::from)
        }
        Cmd::Map {
            img,
            all_roots,
            format,
        } => {
            let s = setup(&img, all_roots, "map", |_, _| Ok(()))?;
            let images = s.dump.images();
            let mem = Regions::new(&images)?;
            with_mode!(s.mode, m => map::map(&mem, m, &s.roots, &s.labels, format, out))
                .map_err(Failure::from)
        }
        Cmd::Tables {
            img,
            all_roots,
            format,
        } => {
            let s = setup(&img, all_roots, "tables", |_, _| Ok(()))?;
            let images = s.dump.images();
            let mem = Regions::new(&images)?;
            with_mode!(s.mode, m => {
                // Duplicate roots are refused as the walk refuses them.
                let _ = Walk::new_in(m, &mem, &s.roots)?;
                map::print_tables(&mem, m, &s.roots, format, out)
            })
            .map_err(Failure::from)
        }
        Cmd::Translate { img, space, vas } => {
            // Every VA is checked before anything is printed.
            let check = |mode: Mode, roots: &[PhysAddr]| {
                if let Some(va) = vas.iter().find(|&&va| !mode.addressable(va)) {
                    return Err(Failure::Error(format!(
                        "VA {va:#x} lies outside {}",
                        mode.space()
                    )));
                }
                if space as usize >= roots.len() {
                    return Err(Failure::Error(format!(
                        "there is no space {space}: {} root{} (--space counts from 0)",
                        roots.len(),
                        if roots.len() == 1 { "" } else { "s" }
                    )));
                }
                Ok(())
            };
            let s = setup(&img, false, "translate", check)?;
            let images = s.dump.images();
            let mem = Regions::new(&images)?;
            with_mode!(s.mode, m => translate_in(m, &mem, &s.roots, space, &vas, out))
        }
    }
}
