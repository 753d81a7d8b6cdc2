"""The ``safescale`` command."""

from safescale.cli._app import app, main

__all__ = ["app", "main"]
