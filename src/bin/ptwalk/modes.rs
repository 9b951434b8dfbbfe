//! The paging mode a run uses, chosen at run time (`--mode`, or a QEMU
//! core's vCPU registers) and turned into a type once: [`Mode`] names the
//! choice, and [`with_mode!`] expands one generic expression per mode
//! type, so every walk, translation, map and compaction runs
//! monomorphised code. No trait object sits in a walk's path.

use ptwalk::{I686, Pae, PagingMode, PhysAddr, X86_64};

use crate::dump::CpuMode;

/// `--mode`: the paging mode's name on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// 32-bit paging: 2 levels, 4-byte entries, 4 MiB pages (unless --no-pse).
    I686,
    /// PAE paging: 3 levels, 8-byte entries, 2 MiB pages, NX.
    Pae,
    /// 4-level long mode: 2 MiB and 1 GiB pages, NX, canonical 48-bit VAs.
    #[value(name = "x86-64")]
    X86_64,
    /// 5-level long mode (CR4.LA57): canonical 57-bit VAs.
    #[value(name = "x86-64-la57")]
    X86_64La57,
}

/// A paging mode with its options, as a value the CLI can pass around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    I686(I686),
    Pae(Pae),
    X86_64(X86_64),
}

/// Evaluates `$body` with `$m` bound to the mode as its own type (one
/// expansion per mode type, each monomorphised).
macro_rules! with_mode {
    ($mode:expr, $m:ident => $body:expr) => {
        match $mode {
            $crate::modes::Mode::I686($m) => $body,
            $crate::modes::Mode::Pae($m) => $body,
            $crate::modes::Mode::X86_64($m) => $body,
        }
    };
}
pub(crate) use with_mode;

impl Mode {
    /// The mode `--mode` names; `pse` is for i686 only.
    pub fn from_arg(arg: ModeArg, pse: bool) -> Mode {
        match arg {
            ModeArg::I686 => Mode::I686(I686 { pse }),
            ModeArg::Pae => Mode::Pae(Pae::default()),
            ModeArg::X86_64 => Mode::X86_64(X86_64::default()),
            ModeArg::X86_64La57 => Mode::X86_64(X86_64::LA57),
        }
    }

    /// The mode vCPU registers select (`None`: paging off).
    pub fn from_cpu(cpu: CpuMode) -> Option<Mode> {
        match cpu {
            CpuMode::Off => None,
            CpuMode::I686 { pse } => Some(Mode::I686(I686 { pse })),
            CpuMode::Pae => Some(Mode::Pae(Pae::default())),
            CpuMode::Long { la57 } => Some(Mode::X86_64(X86_64::default().with_la57(la57))),
        }
    }

    /// The `--mode` value naming this mode.
    pub fn arg(self) -> ModeArg {
        match self {
            Mode::I686(_) => ModeArg::I686,
            Mode::Pae(_) => ModeArg::Pae,
            Mode::X86_64(m) if m.la57() => ModeArg::X86_64La57,
            Mode::X86_64(_) => ModeArg::X86_64,
        }
    }

    /// For messages: `i686 (PSE)`, `i686 (no PSE)`, `pae`, `x86-64`,
    /// `x86-64-la57` (the `--mode` spellings).
    pub fn name(self) -> &'static str {
        match self {
            Mode::I686(I686 { pse: true }) => "i686 (PSE)",
            Mode::I686(I686 { pse: false }) => "i686 (no PSE)",
            Mode::Pae(_) => "pae",
            Mode::X86_64(m) if m.la57() => "x86-64-la57",
            Mode::X86_64(_) => "x86-64",
        }
    }

    /// The `--mode` spelling that walks this mode again (`i686`, `pae`,
    /// `x86-64`, `x86-64-la57`; i686 without PSE is `i686` with
    /// `--no-pse`).
    pub fn arg_name(self) -> &'static str {
        match self.arg() {
            ModeArg::I686 => "i686",
            ModeArg::Pae => "pae",
            ModeArg::X86_64 => "x86-64",
            ModeArg::X86_64La57 => "x86-64-la57",
        }
    }

    /// The root table a root given as CR3 holds it names.
    pub fn root_table(self, cr3: PhysAddr) -> PhysAddr {
        with_mode!(self, m => m.root_table(cr3))
    }

    /// Bytes of the root table (32 for PAE, else 4096).
    pub fn root_bytes(self) -> usize {
        fn bytes<P: PagingMode>(m: P) -> usize {
            P::table_bytes(m.root_level())
        }
        with_mode!(self, m => bytes(m))
    }

    /// Whether the mode can address `va` (i686 and PAE: below 4 GiB;
    /// x86-64: canonical).
    pub fn addressable(self, va: u64) -> bool {
        with_mode!(self, m => m.linear(va).is_some())
    }

    /// Why the mode cannot address a VA, for messages: "the 32-bit
    /// address space of i686", "the canonical 48-bit address space of
    /// x86-64".
    pub fn space(self) -> String {
        let bits = with_mode!(self, m => m.va_bits());
        let name = match self {
            Mode::I686(_) => "i686",
            _ => self.name(),
        };
        match self {
            Mode::X86_64(_) => format!("the canonical {bits}-bit address space of {name}"),
            _ => format!("the {bits}-bit address space of {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_their_names() {
        for arg in [
            ModeArg::I686,
            ModeArg::Pae,
            ModeArg::X86_64,
            ModeArg::X86_64La57,
        ] {
            assert_eq!(Mode::from_arg(arg, true).arg(), arg);
        }
        assert_eq!(
            Mode::from_arg(ModeArg::X86_64La57, true).name(),
            "x86-64-la57"
        );
        assert_eq!(
            Mode::from_cpu(CpuMode::Long { la57: true }),
            Some(Mode::X86_64(X86_64::LA57))
        );
        assert_eq!(Mode::from_cpu(CpuMode::Off), None);
    }

    #[test]
    fn roots_and_vas_follow_the_mode() {
        let cr3 = PhysAddr(0x8000_0000_0123_4fff);
        assert_eq!(
            Mode::X86_64(X86_64::default()).root_table(cr3),
            PhysAddr(0x0123_4000)
        );
        assert_eq!(
            Mode::Pae(Pae::default()).root_table(PhysAddr(0x1234_5678)),
            PhysAddr(0x1234_5660)
        );
        assert_eq!(Mode::Pae(Pae::default()).root_bytes(), 32);
        assert_eq!(Mode::X86_64(X86_64::LA57).root_bytes(), 4096);
        let long = Mode::X86_64(X86_64::default());
        assert!(long.addressable(0xffff_8880_0000_0000));
        assert!(!long.addressable(0x0000_8000_0000_0000));
        assert!(Mode::X86_64(X86_64::LA57).addressable(0x00ff_0000_0000_0000 | (0xff << 56)));
        assert!(!Mode::Pae(Pae::default()).addressable(1 << 32));
        assert!(Mode::I686(I686::default()).addressable(0xffff_ffff));
    }
}
