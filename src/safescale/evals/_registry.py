"""Inspect AI entry point (``[project.entry-points.inspect_ai]``): registers the provider.

Inspect imports this module when it meets an unknown model prefix; the provider class itself
(and torch) is imported only when a ``safescale/...`` model is asked for.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.model import modelapi


@modelapi(name="safescale")
def safescale() -> type[Any]:
    """The in-process provider for a local Hugging Face causal-LM folder."""
    from safescale.evals._provider import LocalModelAPI

    return LocalModelAPI
