"""``python -m bascule.stack.gateway``: serve a gateway replica."""

from bascule.stack.gateway.app import main

if __name__ == "__main__":
    main()
