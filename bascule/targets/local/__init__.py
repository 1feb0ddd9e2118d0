"""The local target: every component replica is a process on 127.0.0.1, every hop goes through a
fault proxy, and service names resolve through a DNS server that bascule runs.

- `stack.LocalStack`: starts a design's stack (DNS, fault plane, processes), optionally with its
  loopback control channel (`control`); `proxy`, `dns`, `faultstate` are its parts.
- `effects`: what each fault kind does to those parts (pure); `board.FaultBoard`: the faults in
  force on a stack, right when they overlap.
- `target.LocalTarget`: a plan's actions carried out, every undo recorded first in the run's
  `ledger`; `recover.recover`: cleans up after a killed run; `inject.inject`: one fault by hand on
  a running stack. `procfs` reads what /proc says about processes and ports.
"""
