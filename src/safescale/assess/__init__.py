"""safescale.assess room (see DESIGN.md)."""

__all__: list[str] = []
