"""Load: the scenario's request schedule and mix, run by locust in processes of its own (never
imported into bascule's), its samples streamed back to the runner.
"""

from bascule.load.generator import LoadGenerator

__all__ = ["LoadGenerator"]
