"""The `nwt-train` command line: a root app (`app.py`) plus one module per command."""
