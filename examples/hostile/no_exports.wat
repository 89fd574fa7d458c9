;; Imports nothing and exports no cap_verify: not a cap-verifier/1 module (E-ABI-INVALID).
(module
  (memory (export "memory") 1)
  (func (export "verify") (result i32) (i32.const 0)))
