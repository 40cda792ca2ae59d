"""Command-line interface: thin commands that parse flags and call the packages below."""
