;; cap_verify recurses without end: the bounded wasm stack overflows (E-SANDBOX-TRAP).
(module
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func $down (param i64) (result i64)
    (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (i32.wrap_i64 (call $down (i64.const 0)))))
