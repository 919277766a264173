//! The Rust client's `LockFileOffsetStore` (`offset.rs`, byte for byte the seed's) as a driver
//! store (docs/drivers.md): every request of the suite is one call of the seed's own methods.
//!
//! Nothing of the seed is fixed here, on purpose: its verdict is the seed's (docs/lockfile.md,
//! "The seed's verdict"). The seed reports every failure as `ClientError::IoError`, so every
//! error is the protocol's `io` kind, with the errno when the OS gave one.

#[path = "../rust_protocol/protocol.rs"]
mod protocol;

mod error;
#[allow(dead_code, unused)]
mod offset;

use offset::{LockFileOffsetStore, OffsetStore};
use protocol::{Driver, Failure};

/// The consumer name of a plain open: the one the reference lock-file store uses, so a seed
/// driver and the Python store share one directory when pointed at one path.
const DEFAULT_NAME: &str = "conformance";

struct Seed {
    store: Option<LockFileOffsetStore>,
}

fn failure(error: error::ClientError) -> Failure {
    match error {
        error::ClientError::IoError(error) => Failure::io(&error),
    }
}

impl Seed {
    fn store(&self) -> Result<&LockFileOffsetStore, Failure> {
        self.store.as_ref().ok_or_else(|| Failure::new("closed", "the store is not open"))
    }
}

impl Driver for Seed {
    fn open(&mut self, path: &str, name: Option<&str>) -> Result<String, Failure> {
        let store = LockFileOffsetStore::open(std::path::Path::new(path), name.unwrap_or(DEFAULT_NAME))
            .map_err(failure)?;
        self.store = Some(store);
        // What the seed claims of itself: offsets on disk, shared between processes, durable.
        Ok("{\"persistent\":true,\"shared\":true,\"durable\":true,\"named\":true}".to_string())
    }

    fn load(&mut self, topic_id: u32, consumer_id: u64) -> Result<Option<u64>, Failure> {
        self.store()?.load(topic_id, consumer_id).map_err(failure)
    }

    fn save(&mut self, topic_id: u32, consumer_id: u64, offset: u64) -> Result<(), Failure> {
        self.store()?.save(topic_id, consumer_id, offset).map_err(failure)
    }

    fn delete(&mut self, topic_id: u32, consumer_id: u64) -> Result<(), Failure> {
        self.store()?.delete(topic_id, consumer_id).map_err(failure)
    }

    fn list_all(&mut self) -> Result<Vec<(u32, u64, u64)>, Failure> {
        let listed = self.store()?.list_all().map_err(failure)?;
        let mut entries: Vec<(u32, u64, u64)> = listed.into_iter().map(|((t, c), o)| (t, c, o)).collect();
        entries.sort();
        Ok(entries)
    }

    fn close(&mut self) -> Result<(), Failure> {
        self.store = None; // the seed has no close: dropping the handle is all there is
        Ok(())
    }
}

fn main() {
    std::process::exit(protocol::serve(&mut Seed { store: None }));
}
