;; Declares a 4 GiB minimum memory: refused before instantiation (E-SANDBOX-MEMORY).
(module
  (memory (export "memory") 65536)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))
