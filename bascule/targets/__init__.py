"""Targets: where a plan is carried out. One adapter per kind of infrastructure (local, kubernetes).

A target starts a design's stack, applies and reverts faults, and records every undo before it acts.
`base.Target` is what the runner needs of a started one, `base.LedgerTarget` the bookkeeping they
share; `registry` maps a target's name to its package (``<target>/package.py``) and its options, so
that adding a target is its package and one registry entry.
"""
