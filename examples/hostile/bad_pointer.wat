;; cap_alloc hands the host a range outside linear memory (E-SANDBOX-TRAP).
(module
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 0x7ffffff0))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))
