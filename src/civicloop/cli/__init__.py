"""The `civicloop` command line."""
