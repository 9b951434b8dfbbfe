//! `OUT.img` and `OUT.json` written as a pair: both appear, or neither
//! changes.
//!
//! Both are written to temporary names beside their targets (created
//! exclusively, so nothing else is ever overwritten), flushed to disk, then
//! renamed: the image first, the JSON last. The JSON names the image's
//! size and XXH3-64 hash, so a reader that finds a JSON whose image does
//! not match (a crash between the two renames) treats the pair as absent;
//! ptwalk writes these fields for the tools that restore snapshots, it does
//! not read pairs itself.
//! Should the JSON's rename fail, the previous image is put back. The
//! temporary files are removed on every failure and on SIGINT/SIGTERM
//! ([`Interrupt`]); only a SIGKILL or a crash can leave one behind.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// SIGINT or SIGTERM received (the signal number), checked between pieces
/// of work.
#[derive(Clone)]
pub struct Interrupt(Arc<AtomicUsize>);

impl Interrupt {
    /// Starts catching SIGINT and SIGTERM. A second signal ends the
    /// process at once (exit 128 + signal), for the phases that do not
    /// check for interruption (planning, parts of verification).
    pub fn catch() -> io::Result<Interrupt> {
        let flag = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // The order matters: the shutdown checks `seen` before this
            // signal sets it, so only a second signal exits.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&seen))?;
            signal_hook::flag::register(sig, Arc::clone(&seen))?;
            signal_hook::flag::register_usize(sig, Arc::clone(&flag), sig as usize)?;
        }
        Ok(Interrupt(flag))
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }
}

/// `OUT` + extension (`OUT.img`, `OUT.json`).
pub fn with_ext(out: &Path, ext: &str) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(ext);
    PathBuf::from(p)
}

/// The two temporary files of a pair being written.
pub struct Pair {
    pub img: PathBuf,
    pub json: PathBuf,
    tmp_img: PathBuf,
    tmp_json: PathBuf,
    done: bool,
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(p)
}

/// Refuses a target that is not a regular file (a directory in the way).
fn check_target(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(format!(
            "cannot write {:?}: it exists and is not a regular file",
            path
        )),
        _ => Ok(()),
    }
}

impl Pair {
    /// Creates the temporary files for `OUT.img` and `OUT.json`; returns
    /// them open (the image, the JSON).
    pub fn create(out: &Path) -> Result<(Pair, File, File), String> {
        let img = with_ext(out, ".img");
        let json = with_ext(out, ".json");
        check_target(&img)?;
        check_target(&json)?;
        let mut pair = Pair {
            tmp_img: tmp_name(&img),
            tmp_json: tmp_name(&json),
            img,
            json,
            done: false,
        };
        // Errors name the file asked for, not its temporary name.
        let open = |p: &Path, target: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| format!("cannot write {target:?}: {e}"))
        };
        let f_img = open(&pair.tmp_img, &pair.img)?;
        let f_json = match open(&pair.tmp_json, &pair.json) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&pair.tmp_img);
                pair.done = true;
                return Err(e);
            }
        };
        Ok((pair, f_img, f_json))
    }

    /// Flushes both files and renames them into place, image first; on
    /// failure the previous image is restored and nothing is left behind.
    pub fn commit(mut self, img: File, json: File) -> Result<(), String> {
        let sync = |f: File, p: &Path| f.sync_all().map_err(|e| format!("cannot write {p:?}: {e}"));
        sync(img, &self.img)?;
        sync(json, &self.json)?;
        // Keep the previous image until the JSON is in place; if it cannot
        // be kept, replace nothing.
        let backup = tmp_name(&with_ext(&self.img, ".old"));
        let had_old = match fs::symlink_metadata(&self.img) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            _ => {
                let _ = fs::remove_file(&backup); // a stale one, from a killed run
                fs::hard_link(&self.img, &backup).map_err(|e| {
                    format!(
                        "cannot keep the previous {:?} while replacing it ({e}); nothing was written",
                        self.img
                    )
                })?;
                true
            }
        };
        if let Err(e) = fs::rename(&self.tmp_img, &self.img) {
            if had_old {
                let _ = fs::remove_file(&backup);
            }
            return Err(format!("cannot write {:?}: {e}", self.img));
        }
        if let Err(e) = fs::rename(&self.tmp_json, &self.json) {
            let _ = if had_old {
                fs::rename(&backup, &self.img)
            } else {
                fs::remove_file(&self.img)
            };
            return Err(format!("cannot write {:?}: {e}", self.json));
        }
        self.done = true;
        if had_old {
            let _ = fs::remove_file(&backup);
        }
        if let Some(dir) = self.json.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp_img);
            let _ = fs::remove_file(&self.tmp_json);
        }
    }
}
