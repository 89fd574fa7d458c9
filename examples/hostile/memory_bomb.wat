;; cap_verify grows memory 1 MiB at a time and writes to every new 4 KiB page (so the
;; pages are real, not just reserved) until the host refuses, then gives up the way an
;; allocator does when malloc fails (E-SANDBOX-MEMORY).
(module
  (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local $end i32)
    (loop $grow
      (local.set $at (memory.grow (i32.const 16)))
      (if (i32.ne (local.get $at) (i32.const -1))
        (then
          (local.set $at (i32.shl (local.get $at) (i32.const 16)))
          (local.set $end (i32.add (local.get $at) (i32.const 0x100000)))
          (loop $touch
            (i32.store8 (local.get $at) (i32.const 0xa5))
            (local.set $at (i32.add (local.get $at) (i32.const 4096)))
            (br_if $touch (i32.lt_u (local.get $at) (local.get $end))))
          (br $grow))))
    unreachable))
