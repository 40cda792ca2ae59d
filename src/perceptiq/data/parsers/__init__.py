"""One parser module per native dataset layout; see ``_base`` for the contract."""
