;; Asks the host for a clock under the granted module name: still refused
;; (E-SANDBOX-FORBIDDEN-IMPORT). Only env.cap_log exists.
(module
  (import "env" "clock_ms" (func $clock (result i64)))
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (i32.wrap_i64 (call $clock))))
