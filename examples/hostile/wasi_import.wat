;; Asks for WASI's fd_write: refused before any code runs (E-SANDBOX-FORBIDDEN-IMPORT).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0))))
