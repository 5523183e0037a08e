"""Door: the `skd` command line, one module per command group (`app.cli.main` assembles them)."""
