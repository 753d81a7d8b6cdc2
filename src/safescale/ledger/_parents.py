"""Lineage checks inside an append: a model's parent must be a recorded model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from safescale._errors import Problem, UserError
from safescale.policy import ModelRecord


def recorded(conn: Connection, model_id: str) -> bool:
    """Whether a model record with this id is in the ledger."""
    sql = "SELECT 1 FROM entries WHERE model = :m AND kind = 'model' LIMIT 1"
    return conn.execute(text(sql), {"m": model_id}).first() is not None


def parents_recorded(conn: Connection, records: Sequence[Any]) -> None:
    """Refuse a model whose parent is neither recorded nor recorded earlier in ``records``: a
    lineage must be a tree of recorded models (a model is never its own parent)."""
    earlier: set[str] = set()
    for r in records:
        if isinstance(r, ModelRecord):
            if r.parent == r.id:
                raise UserError(Problem(f"model {r.id!r} names itself as its parent; give the "
                                        "model it was trained from", field="--parent"))  # fmt: skip
            if r.parent is not None and r.parent not in earlier and not recorded(conn, r.parent):
                raise UserError(Problem(f"parent {r.parent!r} of model {r.id!r} is not recorded; "
                                        "add it first", field="--parent"))  # fmt: skip
            earlier.add(r.id)
