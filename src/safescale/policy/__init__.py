"""Safety policies as checked code: schema, built-ins, validation, diff, determination."""

__all__: list[str] = []
