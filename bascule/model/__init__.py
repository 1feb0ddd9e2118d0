"""The input model: designs (the system under test), scenarios (what happens to it), durations,
the region catalog, and YAML loading with ``file:line:column`` errors.

Import from the submodules (``bascule.model.design``, ``bascule.model.scenario``,
``bascule.model.loading``); this package's ``__init__`` stays empty so that ``bascule.faults`` can
use durations and selectors without an import cycle.
"""
