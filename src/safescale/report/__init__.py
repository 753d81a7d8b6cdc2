"""safescale.report room (see DESIGN.md)."""

__all__: list[str] = []
