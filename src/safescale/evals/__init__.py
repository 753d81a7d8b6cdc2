"""safescale.evals room (see DESIGN.md)."""

__all__: list[str] = []
