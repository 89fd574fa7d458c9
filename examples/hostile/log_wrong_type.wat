;; Imports env.cap_log with another signature than (i32, i32, i32) -> ():
;; refused like any other import (E-SANDBOX-FORBIDDEN-IMPORT).
(module
  (import "env" "cap_log" (func $log (param i64)))
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (call $log (i64.const 7))
    (i32.const 0)))
