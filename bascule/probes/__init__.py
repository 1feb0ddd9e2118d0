"""Probes: small checks that ask the system whether it still works — once in the steady-state
hypothesis, continuously during a run. One class per kind behind a registry keyed by ``kind:``.

``bascule.probes.specs`` holds what a scenario says about a probe (validated data); the runner
issue adds the classes that run them.
"""
