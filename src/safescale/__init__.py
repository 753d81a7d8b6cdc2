"""safescale: responsible scaling as software.

Safety policies as checked code, compute accounting and assessment triggers, scaling-law
forecasts with honest uncertainty, evaluations through Inspect AI, and a signed evidence ledger
that yields reports an outsider can verify.
"""

from importlib.metadata import PackageNotFoundError, version

from safescale._errors import SafescaleError, UserError

try:
    __version__ = version("safescale")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["SafescaleError", "UserError", "__version__"]
