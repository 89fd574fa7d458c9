;; Accepts, after calling cap_log 2000 times with a 1000-byte line and once with a range
;; outside memory: the host keeps a bounded log and counts the rest.
(module
  (import "env" "cap_log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "flood\1b[31m\ff")
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (local $i i32)
    (call $log (i32.const 2) (i32.const -16) (i32.const 64))
    (loop $again
      (call $log (i32.const 2) (i32.const 0) (i32.const 1000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 2000))))
    (i32.const 0)))
