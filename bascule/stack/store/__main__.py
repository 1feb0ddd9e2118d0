"""``python -m bascule.stack.store``: serve a store replica."""

from bascule.stack.store.app import main

if __name__ == "__main__":
    main()
