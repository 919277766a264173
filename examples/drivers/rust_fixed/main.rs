//! The seed's store with its defects fixed (`offset.rs`) as a driver store (docs/drivers.md).

#[path = "../rust_protocol/protocol.rs"]
mod protocol;

mod error;
mod offset;

use error::ClientError;
use offset::{LockFileOffsetStore, OffsetStore};
use protocol::{Driver, Failure};

/// The consumer name of a plain open: the reference lock-file store's, so this driver and the
/// Python store pointed at one path share one directory (tests/slow/test_rust_interop.py).
const DEFAULT_NAME: &str = "conformance";

struct Fixed {
    store: Option<LockFileOffsetStore>,
}

fn failure(error: ClientError) -> Failure {
    match error {
        ClientError::IoError(error) => Failure::io(&error),
        ClientError::Corrupt { path, message } => {
            let shown = path.display().to_string();
            Failure::new("corrupt", format!("corrupt offset file {}: {}", shown, message)).at(shown)
        }
        ClientError::InvalidName(message) => Failure::invalid(message),
    }
}

impl Fixed {
    fn store(&self) -> Result<&LockFileOffsetStore, Failure> {
        self.store.as_ref().ok_or_else(|| Failure::new("closed", "the store is not open"))
    }
}

impl Driver for Fixed {
    fn open(&mut self, path: &str, name: Option<&str>) -> Result<String, Failure> {
        let store = LockFileOffsetStore::open(std::path::Path::new(path), name.unwrap_or(DEFAULT_NAME))
            .map_err(failure)?;
        self.store = Some(store);
        Ok("{\"persistent\":true,\"shared\":true,\"durable\":true,\"named\":true,\"save_many\":true}".to_string())
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

    fn save_many(&mut self, batch: &[(u32, u64, u64)]) -> Result<(), Failure> {
        self.store()?.save_many(batch).map_err(failure)
    }

    fn close(&mut self) -> Result<(), Failure> {
        self.store = None;
        Ok(())
    }
}

fn main() {
    std::process::exit(protocol::serve(&mut Fixed { store: None }));
}
