#!/bin/sh
# Builds target/rust-fixed-driver with plain rustc, offline, no crates (docs/drivers.md).
set -eu
cd "$(dirname "$0")"
RUSTC="${RUSTC:-rustc}"
mkdir -p target
"$RUSTC" --edition 2021 -O --crate-type rlib --crate-name libc ../rust_protocol/libc.rs -o target/liblibc.rlib
"$RUSTC" --edition 2021 -O --extern libc=target/liblibc.rlib main.rs -o target/rust-fixed-driver
