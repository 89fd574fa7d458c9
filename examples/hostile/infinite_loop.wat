;; cap_verify never returns: fuel runs out (E-SANDBOX-OUT-OF-FUEL); with fuel to spare,
;; the wall-clock limit stops it instead (E-SANDBOX-TIMEOUT).
(module
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (loop $spin (br $spin))
    (i32.const 0)))
