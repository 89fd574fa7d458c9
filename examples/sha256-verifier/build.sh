#!/bin/sh
# Build verifier.wasm from verifier.c: freestanding wasm32, no libc, only env.cap_log imported.
# Needs clang and wasm-ld (Debian/Ubuntu: apt-get install clang lld). The output is
# reproducible: the same compiler version gives the same bytes (no paths or dates embedded).
set -eu
cd "$(dirname "$0")"
CC="${CC:-clang}"
"$CC" --target=wasm32-unknown-unknown -O2 -nostdlib -ffreestanding \
    -fno-builtin -Wall -Wextra -Werror \
    -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536 -Wl,--initial-memory=131072 \
    -o verifier.wasm verifier.c
echo "built verifier.wasm ($(wc -c < verifier.wasm) bytes)"
