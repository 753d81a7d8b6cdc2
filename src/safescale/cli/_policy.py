"""``safescale policy ...``"""

import typer

app = typer.Typer(help="Safety policies: list, show, validate, diff.", no_args_is_help=True)
