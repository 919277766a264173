//! The Rust client's lock-file protocol (seed `offset.rs`), as a command-line tool for interop
//! tests. The file handling is copied in behaviour from the seed: `write_offset_file`,
//! `read_offset_file`, `parse_offset_filename` and the (buggy) `delete`. `flock` is declared
//! directly instead of through the `libc` crate so the tool builds with plain `rustc`, offline.
//!
//! Usage:
//!   offset_tool save DIR CONSUMER TOPIC CID OFFSET
//!   offset_tool saves DIR CONSUMER TOPIC CID FIRST COUNT   (COUNT saves: FIRST, FIRST+1, ...)
//!   offset_tool load DIR CONSUMER TOPIC CID                 (prints the offset or "none")
//!   offset_tool list DIR CONSUMER                           (prints "topic consumer offset" lines)
//!   offset_tool delete DIR CONSUMER TOPIC CID               (the seed's delete: no lock taken)
//!   offset_tool hold DIR CONSUMER TOPIC CID                 (locks, prints "locked", waits for a
//!                                                            line on stdin, then lets go)

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const LOCK_EX: i32 = 2;

extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

struct Store {
    dir: PathBuf,
}

impl Store {
    fn open(base: &str, consumer: &str) -> io::Result<Store> {
        let dir = Path::new(base).join(consumer);
        fs::create_dir_all(&dir)?;
        Ok(Store { dir })
    }

    fn offset_path(&self, topic: u32, consumer: u64) -> PathBuf {
        self.dir.join(format!("topic-{}-consumer-{}.offset", topic, consumer))
    }

    fn lock_path(&self, topic: u32, consumer: u64) -> PathBuf {
        self.dir.join(format!("topic-{}-consumer-{}.lock", topic, consumer))
    }

    fn lock(&self, topic: u32, consumer: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.lock_path(topic, consumer))?;
        // SAFETY: the descriptor is valid for the lifetime of `file`.
        if unsafe { flock(file.as_raw_fd(), LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(file)
    }

    fn save(&self, topic: u32, consumer: u64, offset: u64) -> io::Result<()> {
        let path = self.offset_path(topic, consumer);
        let temp_path = path.with_extension("offset.tmp");
        let lock_file = self.lock(topic, consumer)?;
        let mut temp_file = File::create(&temp_path)?;
        writeln!(temp_file, "{}", offset)?;
        temp_file.sync_all()?;
        drop(temp_file);
        fs::rename(&temp_path, &path)?;
        drop(lock_file);
        Ok(())
    }

    fn read(path: &Path) -> io::Result<u64> {
        let mut content = String::new();
        File::open(path)?.read_to_string(&mut content)?;
        content.trim().parse().map_err(io::Error::other)
    }

    fn load(&self, topic: u32, consumer: u64) -> io::Result<Option<u64>> {
        let path = self.offset_path(topic, consumer);
        if !path.exists() {
            return Ok(None);
        }
        Self::read(&path).map(Some)
    }

    fn parse_name(name: &str) -> Option<(u32, u64)> {
        let name = name.strip_suffix(".offset")?;
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() >= 4 && parts[0] == "topic" && parts[2] == "consumer" {
            Some((parts[1].parse().ok()?, parts[3].parse().ok()?))
        } else {
            None
        }
    }

    fn list(&self) -> io::Result<BTreeMap<(u32, u64), u64>> {
        let mut found = BTreeMap::new();
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let path = entry.path();
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let Some(key) = Self::parse_name(name) {
                    if let Ok(offset) = Self::read(&path) {
                        found.insert(key, offset);
                    }
                }
            }
        }
        Ok(found)
    }

    fn delete(&self, topic: u32, consumer: u64) {
        let _ = fs::remove_file(self.offset_path(topic, consumer));
        let _ = fs::remove_file(self.lock_path(topic, consumer));
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {}", i))?
        .parse()
        .map_err(|_| format!("bad argument {}: {:?}", i, args[i]))
}

fn run(args: &[String]) -> Result<(), String> {
    let command = args.get(1).ok_or("missing command")?.as_str();
    let store = Store::open(
        args.get(2).ok_or("missing DIR")?,
        args.get(3).ok_or("missing CONSUMER")?,
    )
    .map_err(|e| e.to_string())?;
    let io_err = |e: io::Error| e.to_string();
    match command {
        "save" => store
            .save(arg(args, 4)?, arg(args, 5)?, arg(args, 6)?)
            .map_err(io_err),
        "saves" => {
            let (topic, consumer): (u32, u64) = (arg(args, 4)?, arg(args, 5)?);
            let (first, count): (u64, u64) = (arg(args, 6)?, arg(args, 7)?);
            for offset in first..first + count {
                store.save(topic, consumer, offset).map_err(io_err)?;
            }
            Ok(())
        }
        "load" => {
            match store.load(arg(args, 4)?, arg(args, 5)?).map_err(io_err)? {
                Some(offset) => println!("{}", offset),
                None => println!("none"),
            }
            Ok(())
        }
        "list" => {
            for ((topic, consumer), offset) in store.list().map_err(io_err)? {
                println!("{} {} {}", topic, consumer, offset);
            }
            Ok(())
        }
        "delete" => {
            store.delete(arg(args, 4)?, arg(args, 5)?);
            Ok(())
        }
        "hold" => {
            let lock = store.lock(arg(args, 4)?, arg(args, 5)?).map_err(io_err)?;
            println!("locked");
            io::stdout().flush().map_err(io_err)?;
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line).map_err(io_err)?;
            drop(lock);
            println!("released");
            Ok(())
        }
        other => Err(format!("unknown command {:?}", other)),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("offset_tool: {}", message);
            ExitCode::FAILURE
        }
    }
}
