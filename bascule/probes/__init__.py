"""Probes: small checks that ask the system whether it still works — once in the steady-state
hypothesis, continuously during a run. One class per kind behind a registry keyed by ``kind:``.

What a scenario says about a probe is validated data in ``bascule.model.probes``; the classes
here run them and report `bascule.journal.RequestSample`\\ s.
"""
