//! The two items of the `libc` crate that the seed's `offset.rs` uses, declared by hand so the
//! drivers build with plain `rustc`, offline, with no crates (docs/drivers.md).
#![allow(non_camel_case_types)]

pub type c_int = i32;

pub const LOCK_SH: c_int = 1;
pub const LOCK_EX: c_int = 2;
pub const LOCK_NB: c_int = 4;
pub const LOCK_UN: c_int = 8;

extern "C" {
    /// flock(2), from the C library every Rust program on Linux links anyway.
    pub fn flock(fd: c_int, operation: c_int) -> c_int;
}
