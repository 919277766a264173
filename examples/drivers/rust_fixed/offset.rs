//! The seed's `LockFileOffsetStore` (`../rust_seed/offset.rs`) with its defects fixed, on disk
//! the same as the seed and as lance-offsets' Python lock-file store (docs/lockfile.md): the same
//! names, the same `decimal + "\n"` contents, the same `flock` on the same `.lock` files, so all
//! three can share one directory.
//!
//! Each fix names the seed's defect it removes and the property that finds it (docs/drivers.md,
//! "The Rust seed's verdict"):
//!
//! 1. no cache: `load` reads the file, `list_all` lists the directory (the seed answered from a
//!    per-handle cache: P2, M1, H2);
//! 2. a damaged file is an error naming it, never skipped nor read loosely (the seed's
//!    `load_all_into_cache` skipped it and its parser took `"12"` for a cut `"1234\n"`: F1);
//! 3. the directory is fsynced after every rename and removal (D3);
//! 4. delete takes the key's lock and never removes the lock file (the seed unlinked it without
//!    the lock, letting two writers in at once: M2), and reports what failed (F2);
//! 5. a save re-checks after locking that its lock file is still the one at the path (a seed
//!    client sharing the directory may still unlink it);
//! 6. consumer names are checked before anything is created (S1), and only canonical file
//!    names are keys;
//! 7. `save_many`: every temp file written and fsynced before the first rename, one directory
//!    fsync (per-key durable, as the Python store's).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{ClientError, Result};

/// The largest offset file read (the Python store's limit too): anything longer is damage.
const MAX_FILE: u64 = 4096;

pub trait OffsetStore {
    fn load(&self, topic_id: u32, consumer_id: u64) -> Result<Option<u64>>;
    fn save(&self, topic_id: u32, consumer_id: u64, offset: u64) -> Result<()>;
    fn delete(&self, topic_id: u32, consumer_id: u64) -> Result<()>;
    fn list_all(&self) -> Result<HashMap<(u32, u64), u64>>;
}

#[derive(Debug)]
pub struct LockFileOffsetStore {
    base_dir: PathBuf,
}

/// A held `flock` on a key's lock file; released (explicitly, then by close) when dropped.
struct KeyLock {
    file: File,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is open for as long as `file` lives.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

fn io(error: io::Error) -> ClientError {
    ClientError::IoError(error)
}

/// Fix 6: one portable directory name, as the Python store requires (docs/lockfile.md).
fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(ClientError::InvalidName(format!("invalid consumer name {:?}: {}", name, why)));
    if name.is_empty() || name == "." || name == ".." {
        return bad("empty, . or ..");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name.chars().any(|c| (c as u32) < 0x20 || "/\\:<>\"|?*\u{7f}".contains(c)) {
        return bad("a separator, a reserved or a control character");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return bad("a trailing dot or space");
    }
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.chars().count() == 4
            && stem.chars().last().map_or(false, |c| c.is_ascii_digit() || "¹²³".contains(c)));
    if device {
        return bad("a Windows device name");
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

impl LockFileOffsetStore {
    pub fn open(base_dir: &Path, consumer_name: &str) -> Result<Self> {
        check_name(consumer_name)?;
        let dir = base_dir.join(consumer_name);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io)?;
            // The new directory's own entry must survive a power cut too.
            fsync_dir(base_dir)?;
        }
        Ok(Self { base_dir: dir })
    }

    fn file(&self, topic_id: u32, consumer_id: u64, suffix: &str) -> PathBuf {
        self.base_dir.join(format!("topic-{}-consumer-{}.{}", topic_id, consumer_id, suffix))
    }

    /// Fix 6: only the names this store writes are keys (`topic-01-...` would alias `topic-1-`).
    fn parse_offset_filename(name: &str) -> Option<(u32, u64)> {
        let rest = name.strip_prefix("topic-")?.strip_suffix(".offset")?;
        let (topic, consumer) = rest.split_once("-consumer-")?;
        let canonical = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if !canonical(topic) || !canonical(consumer) {
            return None;
        }
        Some((topic.parse().ok()?, consumer.parse().ok()?))
    }

    /// Fix 2: `decimal + "\n"` or an error naming the file; never None for a file that exists.
    fn read_offset_file(path: &Path) -> Result<Option<u64>> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut content = Vec::new();
        Read::by_ref(&mut file).take(MAX_FILE + 1).read_to_end(&mut content).map_err(io)?;
        let corrupt = |why: &str| {
            let shown = String::from_utf8_lossy(&content[..content.len().min(40)]).into_owned();
            Err(ClientError::Corrupt { path: path.to_path_buf(), message: format!("{} (content {:?})", why, shown) })
        };
        if content.len() as u64 > MAX_FILE {
            return corrupt("longer than 4096 bytes");
        }
        if content.last() != Some(&b'\n') {
            return corrupt("no final newline: cut short");
        }
        let text = match std::str::from_utf8(&content) {
            Ok(text) => text.trim(),
            Err(_) => return corrupt("not text"),
        };
        let digits = text.strip_prefix('+').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return corrupt("not a decimal number");
        }
        match digits.parse::<u64>() {
            Ok(offset) => Ok(Some(offset)),
            Err(_) => corrupt("above 2^64-1"),
        }
    }

    /// Fix 4 and 5: the key's lock, held on the file that is at the path once it is held.
    fn lock(&self, topic_id: u32, consumer_id: u64) -> Result<KeyLock> {
        let path = self.file(topic_id, consumer_id, "lock");
        loop {
            let file = OpenOptions::new().write(true).create(true).open(&path).map_err(io)?;
            // SAFETY: the descriptor is valid while `file` lives.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(io(io::Error::last_os_error()));
            }
            let held = file.metadata().map_err(io)?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(KeyLock { file }),
                Ok(_) => continue, // replaced while we waited: lock the one now there
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // unlinked (a seed client)
                Err(e) => return Err(io(e)),
            }
        }
    }

    fn write_temp(&self, topic_id: u32, consumer_id: u64, offset: u64) -> Result<PathBuf> {
        let temp = self.file(topic_id, consumer_id, "offset.tmp");
        let written = File::create(&temp).and_then(|mut f| {
            writeln!(f, "{}", offset)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io(e));
        }
        Ok(temp)
    }

    fn rename_in(&self, temp: &Path, topic_id: u32, consumer_id: u64) -> Result<()> {
        if let Err(e) = fs::rename(temp, self.file(topic_id, consumer_id, "offset")) {
            let _ = fs::remove_file(temp);
            return Err(io(e));
        }
        Ok(())
    }

    /// Fix 7: per-key durable, not atomic; the locks in key order (no two batches deadlock).
    pub fn save_many(&self, batch: &[(u32, u64, u64)]) -> Result<()> {
        let mut sorted: Vec<(u32, u64, u64)> = batch.to_vec();
        sorted.sort();
        sorted.dedup_by(|later, earlier| {
            let same = (later.0, later.1) == (earlier.0, earlier.1);
            if same {
                earlier.2 = later.2; // the last value of a key wins, as two saves would
            }
            same
        });
        if sorted.is_empty() {
            return Ok(());
        }
        let mut locks = Vec::with_capacity(sorted.len());
        for &(t, c, _) in &sorted {
            locks.push(self.lock(t, c)?);
        }
        let mut temps = Vec::with_capacity(sorted.len());
        for &(t, c, o) in &sorted {
            match self.write_temp(t, c, o) {
                Ok(temp) => temps.push(temp),
                Err(e) => {
                    for temp in &temps {
                        let _ = fs::remove_file(temp);
                    }
                    return Err(e);
                }
            }
        }
        for (temp, &(t, c, _)) in temps.iter().zip(&sorted) {
            self.rename_in(temp, t, c)?;
        }
        fsync_dir(&self.base_dir)?;
        drop(locks);
        Ok(())
    }
}

impl OffsetStore for LockFileOffsetStore {
    fn load(&self, topic_id: u32, consumer_id: u64) -> Result<Option<u64>> {
        Self::read_offset_file(&self.file(topic_id, consumer_id, "offset"))
    }

    fn save(&self, topic_id: u32, consumer_id: u64, offset: u64) -> Result<()> {
        let _lock = self.lock(topic_id, consumer_id)?;
        let temp = self.write_temp(topic_id, consumer_id, offset)?;
        self.rename_in(&temp, topic_id, consumer_id)?;
        fsync_dir(&self.base_dir) // fix 3
    }

    fn delete(&self, topic_id: u32, consumer_id: u64) -> Result<()> {
        let _lock = self.lock(topic_id, consumer_id)?;
        for suffix in ["offset", "offset.tmp"] {
            match fs::remove_file(self.file(topic_id, consumer_id, suffix)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        fsync_dir(&self.base_dir) // fix 3; the lock file stays (fix 4)
    }

    fn list_all(&self) -> Result<HashMap<(u32, u64), u64>> {
        let mut found = HashMap::new();
        let entries = match fs::read_dir(&self.base_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let key = match name.to_str().and_then(Self::parse_offset_filename) {
                Some(key) => key,
                None => continue,
            };
            if let Some(offset) = Self::read_offset_file(&entry.path())? {
                found.insert(key, offset);
            }
        }
        Ok(found)
    }
}
