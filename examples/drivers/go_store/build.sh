#!/bin/sh
# Builds target/go-store-driver with the Go standard library only, offline (docs/drivers.md).
# A Go program makes its system calls itself and is linked statically: the suite's syscall shim
# never runs in it (docs/drivers.md, "What the suite sees of a driver").
set -eu
cd "$(dirname "$0")"
mkdir -p target
GOFLAGS=-mod=mod GOPROXY=off GOCACHE="${GOCACHE:-$PWD/target/go-cache}" go build -o target/go-store-driver .
