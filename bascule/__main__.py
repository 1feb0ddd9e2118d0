"""``python -m bascule``: the same as the ``bascule`` command."""

from bascule.cli import main

main()
