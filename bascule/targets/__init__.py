"""Targets: where a plan is carried out. One adapter per kind of infrastructure (local, kubernetes).

A target starts a design's stack, applies and reverts faults, and records every undo before it acts.
"""
