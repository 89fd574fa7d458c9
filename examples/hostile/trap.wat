;; cap_verify reaches unreachable code (E-SANDBOX-TRAP).
(module
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    unreachable))
