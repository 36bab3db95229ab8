"""`msgf` subcommands, one module each (see msgf/cli.py)."""
