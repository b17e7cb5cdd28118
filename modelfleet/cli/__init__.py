"""The `modelfleet` command line (see `main.py`)."""

from modelfleet.cli.main import main

__all__ = ["main"]
