"""What changed between two policies, section by section, in words a reviewer can scan.

Lists of objects with ids (thresholds, triggers, safeguards, decisions, ...) are compared by id,
so a reordering is no change and a renamed id shows as one removal and one addition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from safescale.policy._schema import Policy

SECTION_TITLES = {
    "framework": "framework",
    "risk_domains": "risk domains",
    "evaluations": "evaluations",
    "capability_thresholds": "thresholds",
    "safeguard_standards": "safeguards",
    "baseline_safeguards": "baseline safeguards",
    "assessment_triggers": "assessment triggers (cadence)",
    "decision_rules": "decision rules",
    "decisions": "decisions",
    "unmet_safeguards": "unmet-safeguards ladder and pause rule",
    "governance": "governance",
    "transparency": "transparency",
    "exceptions": "exceptions",
    "regulatory_overlays": "regulatory overlays",
    "planned_scale_up": "planned scale-up",
}


@dataclass(frozen=True)
class Change:
    """One difference between two policies."""

    section: str
    """Top-level section (``assessment_triggers``, ``capability_thresholds``, ...)."""
    path: str
    """Where inside the section, ids in brackets: ``[notably-more-capable-compute].ratio``."""
    kind: str
    """added | removed | changed"""
    old: Any = None
    new: Any = None

    def describe(self) -> str:
        """The change for people: one line, or for a long value the whole old and new values
        on lines of their own (a value is never cut)."""
        where = f"{SECTION_TITLES.get(self.section, self.section)} {self.path}".strip()
        if self.kind == "added":
            return f"+ {where}: added {_short(self.new)}"
        if self.kind == "removed":
            return f"- {where}: removed {_short(self.old)}"
        old, new = _short(self.old), _short(self.new)
        if max(len(old), len(new)) <= INLINE_VALUE:
            return f"~ {where}: {old} -> {new}"
        return f"~ {where}:\n    was: {old}\n    now: {new}"


INLINE_VALUE = 40
"""A changed value longer than this is shown, old and new, on lines of their own."""


def _short(value: Any) -> str:
    """A value as text: an object by its id or name (its fields are changes of their own),
    anything else whole."""
    if isinstance(value, dict):
        label = value.get("id") or value.get("evaluation") or value.get("name")
        return f"'{label}'" if label else json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, list):  # as JSON (true, null), never Python's repr (True, None)
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def diff_policies(a: Policy, b: Policy) -> list[Change]:
    """Every change from policy ``a`` to policy ``b``, in section order."""
    da, db = a.to_dict(), b.to_dict()
    changes: list[Change] = []
    for section in [*SECTION_TITLES, *sorted((set(da) | set(db)) - set(SECTION_TITLES))]:
        if section == "schema":
            continue
        _walk(section, "", da.get(section), db.get(section), changes)
    return changes


KEYS = ("id", "evaluation")
"""What names an item of a list, so that lists are compared item by item, not by position:
an id, or the evaluation a threshold binds."""


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    for name in KEYS:
        if all(isinstance(i, dict) and name in i for i in items):
            keys = [i[name] for i in items]
            if len(set(keys)) == len(keys):
                return {k: i for k, i in zip(keys, items, strict=True)}
    return None


def _as_set(items: list[Any]) -> set[str] | None:
    """A list of distinct names (``all_of``, ``includes``, ``decided_by``), where order means
    nothing; else ``None``."""
    if all(isinstance(i, str) for i in items) and len(set(items)) == len(items):
        return set(items)
    return None


def _walk(section: str, path: str, old: Any, new: Any, out: list[Change]) -> None:
    if old == new:
        return
    if old is None:
        out.append(Change(section, path, "added", new=new))
        return
    if new is None:
        out.append(Change(section, path, "removed", old=old))
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _walk(section, f"{path}.{key}" if path else str(key), old.get(key), new.get(key), out)
        return
    if isinstance(old, list) and isinstance(new, list):
        ko, kn = _keyed(old), _keyed(new)
        if ko is not None and kn is not None:
            for key in [*ko, *(k for k in kn if k not in ko)]:
                _walk(section, f"{path}[{key}]", ko.get(key), kn.get(key), out)
            return
        so, sn = _as_set(old), _as_set(new)
        if so is not None and sn is not None:
            out += [Change(section, f"{path}[{x}]", "removed", old=x) for x in old if x not in sn]
            out += [Change(section, f"{path}[{x}]", "added", new=x) for x in new if x not in so]
            return
    out.append(Change(section, path, "changed", old=old, new=new))
