"""The `rentabot` command."""

from rentabot.cli.main import main

__all__ = ["main"]
