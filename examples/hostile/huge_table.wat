;; Declares a table of ten million entries: the store's table limit refuses to
;; instantiate it (E-SANDBOX-MEMORY).
(module
  (table 10000000 funcref)
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))
