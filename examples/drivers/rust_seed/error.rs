//! The one item of the Rust client's `crate::error` that the seed's `offset.rs` uses.

use std::fmt;

#[derive(Debug)]
pub enum ClientError {
    IoError(std::io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::IoError(error) => write!(f, "I/O error: {}", error),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;
