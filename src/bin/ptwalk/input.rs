//! Opening the image: regular files only, never blocking, memory-mapped,
//! and a file that shrinks under the mapping reported as one error line
//! with exit status 2 instead of a `SIGBUS`.
//!
//! # Why a `SIGBUS` handler
//!
//! The image is memory-mapped so that a multi-gigabyte snapshot costs no
//! copy and no read per table. A mapped file that another process
//! truncates makes any later access past the new end raise `SIGBUS`, which
//! kills the process (exit 135) in the middle of a walk. Nothing can
//! prevent the truncation (advisory locks do not bind other writers), and
//! the alternatives cost more than they save: reading the whole file first
//! is slow and holds a copy of the image in memory, and reading each table
//! with `pread` would put a system call in the walker's hot path. So the
//! map stays, and [`load`] installs (on Linux) a `SIGBUS` handler that
//! recognises a fault inside the image's mapping, writes one line prepared
//! in advance, and ends the process with `_exit(2)`. It uses only
//! async-signal-safe calls (`write`, `_exit`, `signal`, `raise`) and
//! lock-free atomics. A `SIGBUS` anywhere else, or one sent by another
//! process, is not ours: the handler restores the default action and raises
//! the signal again, so it still ends the process as it would have.
//!
//! The partial output already written stays written; output still in the
//! process's buffer is lost, and the error line says the output is
//! incomplete.

use std::fs::{self, File, FileType, OpenOptions};
#[cfg(unix)]
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The image file's bytes, memory-mapped.
pub enum Bytes {
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

/// Why a file that is not a regular file is refused, or `None` for a
/// regular file.
fn not_regular(t: &FileType) -> Option<&'static str> {
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("is a directory");
    }
    #[cfg(unix)]
    {
        if t.is_fifo() {
            return Some("is a FIFO (named pipe)");
        }
        if t.is_char_device() {
            return Some("is a character device");
        }
        if t.is_block_device() {
            return Some("is a block device");
        }
        if t.is_socket() {
            return Some("is a socket");
        }
    }
    Some("is not a regular file")
}

/// Opens and maps the file at `path` (what it holds is for
/// [`dump`](crate::dump) to say).
///
/// Only regular files (or symbolic links to them) are accepted: the file's
/// type is checked before it is opened, so a FIFO, a device or a socket is
/// refused before anything can block. The open itself is non-blocking
/// (`O_NONBLOCK`) and the type is checked again on the open file, in case
/// the path was replaced in between.
///
/// # Errors
///
/// One line naming the file (quoted, control characters escaped) and what
/// is wrong with it.
pub fn load(path: &Path) -> Result<Bytes, String> {
    let refuse = |why: &str| format!("cannot open image {path:?}: {why}");
    let meta = fs::metadata(path).map_err(|e| refuse(&e.to_string()))?;
    if let Some(why) = not_regular(&meta.file_type()) {
        return Err(refuse(&format!("it {why}, not a regular file")));
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file: File = options.open(path).map_err(|e| refuse(&e.to_string()))?;
    let meta = file.metadata().map_err(|e| refuse(&e.to_string()))?;
    if let Some(why) = not_regular(&meta.file_type()) {
        return Err(refuse(&format!("it {why}, not a regular file")));
    }
    let bytes = if meta.len() == 0 {
        Bytes::Empty
    } else {
        // SAFETY: `Mmap::map` requires that the file is not changed while
        // it is mapped. ptwalk maps it read-only and never writes it. If
        // another process truncates it, reads past the new end raise
        // SIGBUS, which `guard_truncation` below turns into an error line
        // and exit 2 before any faulting read returns. Another process
        // rewriting the contents in place is outside what this tool can
        // prevent; the image is documented as a snapshot that is not
        // changed while it is inspected.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("cannot map image {path:?}: {e}"))?;
        guard_truncation(&map, path)?;
        Bytes::Map(map)
    };
    Ok(bytes)
}

/// Drops this process's resident copy of `map[..upto]` (whole pages; the
/// pages stay in the page cache and are read again if touched), for scans
/// that read a whole dump once.
pub fn release(map: &[u8], upto: usize) {
    let len = upto.min(map.len()) & !4095;
    if len == 0 || (map.as_ptr() as usize) % 4096 != 0 {
        return;
    }
    // SAFETY: `map` is the start of a read-only mapping of a file ptwalk
    // never writes (page aligned, as mmap returned it, and checked above),
    // and `len` whole pages of it lie inside it. Dropping resident pages
    // changes no byte any reference can observe: a later read faults the
    // same file contents back in.
    unsafe {
        libc::madvise(map.as_ptr().cast_mut().cast(), len, libc::MADV_DONTNEED);
    }
}

/// Without the Linux `siginfo_t` layout (`si_addr`) there is no guard: a
/// truncated image may end the process with a signal there.
#[cfg(not(target_os = "linux"))]
fn guard_truncation(_map: &memmap2::Mmap, _path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(target_os = "linux")]
use sigbus::guard_truncation;

/// The `SIGBUS` guard (Linux).
#[cfg(target_os = "linux")]
mod sigbus {
    use std::ffi::c_void;
    use std::path::Path;
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    /// The guarded mapping: start address and length (0: none).
    static MAP_START: AtomicUsize = AtomicUsize::new(0);
    static MAP_LEN: AtomicUsize = AtomicUsize::new(0);
    /// The line the handler writes: a leaked, never-freed buffer.
    static MSG_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    static MSG_LEN: AtomicUsize = AtomicUsize::new(0);

    /// Installs the `SIGBUS` handler for `map` (see the module docs). The CLI
    /// maps one image per run; a second call would guard the newer mapping
    /// only.
    pub fn guard_truncation(map: &memmap2::Mmap, path: &Path) -> Result<(), String> {
        let msg = format!(
            "ptwalk: image {path:?} was truncated or became unreadable while it was read; the output is incomplete\n"
        );
        let msg: &'static mut [u8] = Vec::leak(msg.into_bytes());
        MSG_LEN.store(msg.len(), Ordering::Relaxed);
        MSG_PTR.store(msg.as_mut_ptr(), Ordering::Release);
        MAP_LEN.store(map.len(), Ordering::Relaxed);
        MAP_START.store(map.as_ptr() as usize, Ordering::Release);

        // SAFETY: `sigaction` is plain old data; all-zero is a valid value
        // (no flags, empty mask, null handler) that is filled in below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) = on_sigbus;
        sa.sa_sigaction = handler as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO;
        // SAFETY: `sa.sa_mask` is a valid, writable `sigset_t`.
        unsafe { libc::sigemptyset(&raw mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised and its handler has the
        // three-argument signature that `SA_SIGINFO` requires; the previous
        // action is not asked for (null).
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &raw const sa, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(format!(
                "cannot guard image {path:?} against truncation: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// The `SIGBUS` handler. Async-signal-safe: atomic loads, `write`,
    /// `_exit`, `signal` and `raise` only; no allocation, no lock, no panic.
    extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
        // SAFETY: with `SA_SIGINFO` the kernel passes a valid `siginfo_t`.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        let start = MAP_START.load(Ordering::Acquire);
        let len = MAP_LEN.load(Ordering::Relaxed);
        // A positive `si_code` (`BUS_ADRERR`, …) is a fault raised by the
        // kernel, for which `si_addr` is the faulting address; a SIGBUS sent by
        // a process (`kill`, `si_code <= 0`) is not a truncation.
        if code > 0 && len != 0 && addr.wrapping_sub(start) < len {
            let msg = MSG_PTR.load(Ordering::Acquire);
            let mut left = MSG_LEN.load(Ordering::Relaxed);
            let mut p = msg.cast_const();
            while left > 0 && !p.is_null() {
                // SAFETY: `p..p + left` lies in the leaked message buffer,
                // which is never freed nor written after it was published.
                let n = unsafe { libc::write(libc::STDERR_FILENO, p.cast(), left) };
                if n <= 0 {
                    break;
                }
                let n = n.unsigned_abs();
                left -= n;
                // SAFETY: `n <= left` bytes were written, so `p + n` stays in
                // (or one past the end of) the buffer.
                p = unsafe { p.add(n) };
            }
            // SAFETY: `_exit` ends the process at once, without running
            // destructors or atexit handlers: nothing that could take a lock.
            unsafe { libc::_exit(2) };
        }
        // Not a fault in the image: restore the default action and raise the
        // signal again; it is delivered once this handler returns (it is
        // blocked while the handler runs) and ends the process as before.
        // SAFETY: `signal` and `raise` are async-signal-safe; SIG_DFL is a
        // valid disposition for SIGBUS.
        unsafe {
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            libc::raise(libc::SIGBUS);
        }
    }
}
