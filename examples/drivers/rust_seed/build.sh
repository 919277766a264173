#!/bin/sh
# Builds target/rust-seed-driver with plain rustc, offline, no crates (docs/drivers.md).
# offset.rs is the seed's file unchanged. A rustc older than 1.74 (Debian 12 ships 1.63) lacks
# std::io::Error::other, which the seed calls; for it the build compiles a copy of offset.rs
# where that call is spelled as what it is defined to be, Error::new(ErrorKind::Other, ..).
set -eu
cd "$(dirname "$0")"
RUSTC="${RUSTC:-rustc}"
mkdir -p target
"$RUSTC" --edition 2021 -O --crate-type rlib --crate-name libc ../rust_protocol/libc.rs -o target/liblibc.rlib
"$RUSTC" --edition 2021 -O --crate-type rlib --crate-name tracing ../rust_protocol/tracing.rs -o target/libtracing.rlib
minor=$("$RUSTC" --version | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')
main=main.rs
if [ "${minor:-0}" -lt 74 ]; then
  mkdir -p target/old-rustc
  sed 's/std::io::Error::other(/std::io::Error::new(std::io::ErrorKind::Other, /g' offset.rs > target/old-rustc/offset.rs
  sed 's|^mod offset;|#[path = "target/old-rustc/offset.rs"] mod offset;|' main.rs > target/old-rustc/main.rs
  cp error.rs target/old-rustc/error.rs
  main=target/old-rustc/main.rs
fi
"$RUSTC" --edition 2021 -O --extern libc=target/liblibc.rlib --extern tracing=target/libtracing.rlib "$main" -o target/rust-seed-driver
