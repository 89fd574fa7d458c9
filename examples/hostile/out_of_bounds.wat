;; cap_verify reads far past the end of its memory (E-SANDBOX-TRAP).
(module
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (i32.load (i32.const 0x7fff0000))))
