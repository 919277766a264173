//! The fixed store's errors: the seed's `IoError`, and the two it reported as I/O errors
//! although nothing failed in I/O (the driver answers them as the protocol's own kinds).

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum ClientError {
    IoError(std::io::Error),
    /// The stored bytes are not an offset (the protocol's `corrupt`).
    Corrupt { path: PathBuf, message: String },
    /// A consumer name the store refuses (the protocol's `invalid_argument`).
    InvalidName(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::IoError(error) => write!(f, "I/O error: {}", error),
            ClientError::Corrupt { path, message } => write!(f, "corrupt offset file {}: {}", path.display(), message),
            ClientError::InvalidName(message) => write!(f, "{}", message),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;
