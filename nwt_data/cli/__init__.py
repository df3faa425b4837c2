"""The `nwt-data` command line: a root app plus one module per command."""
