"""Loading and checking policy files: YAML or JSON in, a :class:`Policy` or a list of problems out.

Every problem names the file, the line where the YAML gives one, the field path and a fix. The
checks run in layers, each only when the previous one passed: bytes (size, encoding), syntax,
shape (pydantic), then cross-references and duplicate ids.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from safescale._config import (
    MAX_YAML_NODES,
    check_yaml_strings,
    line_for,
    parse_field,
    parse_yaml,
    pydantic_problem,
)
from safescale._errors import Problem, UserError
from safescale._input import quote, read_limited
from safescale.policy._records import canonical_json
from safescale.policy._schema import Policy, metric_range

MAX_POLICY_BYTES = 5 * 1024 * 1024
"""Policy files above this size are refused before parsing (real policies are ~100 kB)."""

MAX_POLICY_NODES = MAX_YAML_NODES
"""Values a policy may expand to; stops anchor-and-alias bombs (real policies have ~3,000)."""


# -- built-ins --------------------------------------------------------------------------------


def builtin_ids() -> list[str]:
    """Ids of the policies that ship with safescale."""
    folder = resources.files("safescale.policy") / "builtin"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_path(policy_id: str) -> Path:
    """The file of built-in policy ``policy_id``."""
    ref = resources.files("safescale.policy") / "builtin" / f"{policy_id}.yaml"
    return Path(str(ref))


def load_builtin(policy_id: str) -> Policy:
    """Load the built-in policy ``policy_id`` (for example ``anthropic-rsp-2.2``)."""
    if policy_id not in builtin_ids():
        raise UserError(_unknown_policy(policy_id))
    return load_policy(builtin_path(policy_id))


def load_policy(ref: str | Path) -> Policy:
    """Load a policy from a built-in id or a file path; raise :class:`UserError` on any problem."""
    path = Path(ref)
    if not path.exists() and isinstance(ref, str) and ref in builtin_ids():
        path = builtin_path(ref)
    if not path.exists():
        raise UserError(_unknown_policy(str(ref)))
    policy, problems = check_policy_file(path)
    if problems or policy is None:
        raise UserError(*problems)
    return policy


def _unknown_policy(ref: str) -> Problem:
    return Problem(
        f"no such policy file or built-in policy; built-ins are: {', '.join(builtin_ids())}",
        source=ref,
    )


def policy_sha256(policy: Policy) -> str:
    """sha256 of the policy's canonical JSON: the identity determinations cite."""
    return hashlib.sha256(canonical_json(policy.to_dict())).hexdigest()


# -- checking ---------------------------------------------------------------------------------


def check_policy_file(path: str | Path) -> tuple[Policy | None, list[Problem]]:
    """Check one policy file; return the policy (if valid) and every problem found."""
    path = Path(path)
    src = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, [Problem(f"cannot read the file ({exc.strerror})", source=src)]
    if path.is_dir():
        return None, [Problem("is a folder; give a policy file (.yaml or .json)", source=src)]
    if not path.is_file():
        return None, [
            Problem("is not a regular file (a device or a pipe?); give a policy file", source=src)
        ]
    if size > MAX_POLICY_BYTES:
        return None, [
            Problem(
                f"file is {size / 1e6:.1f} MB; a policy file may be at most "
                f"{MAX_POLICY_BYTES / 1e6:.0f} MB (is this the right file?)",
                source=src,
            )
        ]
    try:
        # Read with the limit: a file may grow between the stat and the read.
        data = read_limited(path, MAX_POLICY_BYTES, what="policy file")
    except UserError as exc:
        return None, list(exc.problems)
    return check_policy_text(data, source=src)


def check_policy_text(
    data: bytes | str, source: str = "<policy>"
) -> tuple[Policy | None, list[Problem]]:
    """Check policy text (YAML or JSON); return the policy (if valid) and every problem."""
    if isinstance(data, bytes):
        if b"\x00" in data:
            return None, [Problem("binary data, not a YAML or JSON policy", source=source)]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, [
                Problem(
                    f"not UTF-8 text (bad byte at offset {exc.start}); save the policy as UTF-8",
                    source=source,
                )
            ]
    else:
        text = data
    if not text.strip():
        return None, [
            Problem(
                "empty file; a policy needs at least framework, risk_domains, "
                "capability_thresholds and governance",
                source=source,
            )
        ]
    try:
        doc = parse_yaml(text, source, what="policy", max_nodes=MAX_POLICY_NODES)
    except UserError as exc:
        return None, list(exc.problems)
    except ValueError as exc:  # an integer past Python's str-to-int limit (4,300 digits)
        why = "a number has thousands of digits" if "digits" in str(exc) else "not a policy"
        return None, [Problem(f"{why}; write a finite number in range", source=source)]
    raw, lines = doc.data, doc.lines
    if not isinstance(raw, dict):
        kind = {
            list: "a list",
            str: "a string",
            int: "a number",
            float: "a number",
            bool: "true/false",
        }.get(type(raw), f"a {type(raw).__name__}")
        return None, [
            Problem(
                f"the top level is {kind}; a policy is a mapping with keys such as "
                "framework, capability_thresholds",
                source=source,
                line=1,
            )
        ]
    if doc.problems:
        return None, list(doc.problems)
    try:  # terminal escapes, bidi overrides, NUL in any key or text (JSON can spell them)
        check_yaml_strings(doc, source)
    except UserError as exc:
        return None, list(exc.problems)
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        return None, [pydantic_problem(err, raw, lines, source, Policy) for err in exc.errors()]
    problems = [
        Problem(p.message, source=source, line=line_for(lines, parse_field(p.field)), field=p.field)
        for p in check_references(policy)
    ]
    return (None if problems else policy), problems


# -- cross-references -------------------------------------------------------------------------


def check_references(policy: Policy) -> list[Problem]:
    """Every dangling id and duplicate id in ``policy``, as problems with field paths."""
    problems: list[Problem] = []

    def dupes(items: list[Any], section: str) -> set[str]:
        ids: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.id in ids:
                problems.append(
                    Problem(
                        f"duplicate id '{item.id}' (first at {section}[{ids[item.id]}]); "
                        "ids must be unique",
                        field=f"{section}[{i}].id",
                    )
                )
            else:
                ids[item.id] = i
        return set(ids)

    domains = dupes(policy.risk_domains, "risk_domains")
    evaluations = dupes(policy.evaluations, "evaluations")
    thresholds = dupes(policy.capability_thresholds, "capability_thresholds")
    safeguards = dupes(policy.safeguard_standards, "safeguard_standards")
    roles = dupes(policy.governance.roles, "governance.roles")
    dupes(policy.assessment_triggers, "assessment_triggers")
    dupes(policy.decisions, "decisions")
    dupes(policy.exceptions, "exceptions")
    dupes(policy.regulatory_overlays, "regulatory_overlays")

    def need(ref: str, known: set[str], what: str, field: str) -> None:
        if ref not in known:
            close = difflib.get_close_matches(ref, sorted(known), n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else (f"known: {', '.join(sorted(known))}" if known else f"define it under {what}")
            )
            problems.append(Problem(f"unknown {what[:-1]} id '{ref}'; {hint}", field=field))

    for i, t in enumerate(policy.capability_thresholds):
        base = f"capability_thresholds[{i}]"
        need(t.domain, domains, "risk_domains", f"{base}.domain")
        for j, b in enumerate(t.evaluations):
            need(b.evaluation, evaluations, "evaluations", f"{base}.evaluations[{j}].evaluation")
        for j, sid in enumerate(t.required_safeguards.all_of):
            need(sid, safeguards, "safeguard_standards", f"{base}.required_safeguards.all_of[{j}]")
        for j, group in enumerate(t.required_safeguards.any_of):
            for k, sid in enumerate(group):
                need(
                    sid,
                    safeguards,
                    "safeguard_standards",
                    f"{base}.required_safeguards.any_of[{j}][{k}]",
                )
        for j, tid in enumerate(t.rules_out):
            need(tid, thresholds, "capability_thresholds", f"{base}.rules_out[{j}]")
            if tid == t.id:
                problems.append(
                    Problem("a threshold cannot rule itself out", field=f"{base}.rules_out[{j}]")
                )
    for i, s in enumerate(policy.safeguard_standards):
        for j, sid in enumerate(s.includes):
            need(sid, safeguards, "safeguard_standards", f"safeguard_standards[{i}].includes[{j}]")
    for j, sid in enumerate(policy.baseline_safeguards):
        need(sid, safeguards, "safeguard_standards", f"baseline_safeguards[{j}]")
    for i, trig in enumerate(policy.assessment_triggers):
        role = getattr(trig, "role", None)
        if role is not None:
            need(role, roles, "governance.roles", f"assessment_triggers[{i}].role")
    for i, d in enumerate(policy.decisions):
        for attr in ("recommended_by", "decided_by", "notify", "may_reverse"):
            for j, rid in enumerate(getattr(d, attr)):
                need(rid, roles, "governance.roles", f"decisions[{i}].{attr}[{j}]")
    for i, step in enumerate(policy.unmet_safeguards.ladder):
        for attr in ("approvers", "notify"):
            for j, rid in enumerate(getattr(step, attr)):
                need(rid, roles, "governance.roles", f"unmet_safeguards.ladder[{i}].{attr}[{j}]")
    pause = policy.unmet_safeguards.training_pause
    if pause is not None:
        for j, sid in enumerate(pause.sufficient_safeguards):
            need(
                sid,
                safeguards,
                "safeguard_standards",
                f"unmet_safeguards.training_pause.sufficient_safeguards[{j}]",
            )
    for attr in ("recipients", "escalation"):
        for j, rid in enumerate(getattr(policy.governance.noncompliance, attr)):
            need(rid, roles, "governance.roles", f"governance.noncompliance.{attr}[{j}]")
    for i, exc in enumerate(policy.exceptions):
        for j, rid in enumerate(exc.approvers):
            need(rid, roles, "governance.roles", f"exceptions[{i}].approvers[{j}]")
    problems.extend(_include_cycles(policy))
    problems.extend(_lines_in_range(policy, evaluations))
    return problems


def _include_cycles(policy: Policy) -> list[Problem]:
    """Safeguard standards that include themselves, directly or through others.

    ``includes`` says "meeting this standard also meets those weaker ones". A cycle would let
    an attestation for the weakest standard meet the strongest, so a safeguard could be met
    on paper only; it is refused.
    """
    index = {s.id: i for i, s in enumerate(policy.safeguard_standards)}
    graph = {s.id: [x for x in s.includes if x in index] for s in policy.safeguard_standards}
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if state.get(start):
            continue
        path: list[str] = [start]
        todo: list[Iterator[str]] = [iter(graph[start])]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    i = index[cycle[-2]]
                    j = policy.safeguard_standards[i].includes.index(nxt)
                    problems.append(
                        Problem(
                            f"safeguard standards include each other ({' -> '.join(cycle)}); "
                            "a standard may include only weaker ones, so remove one include",
                            field=f"safeguard_standards[{i}].includes[{j}]",
                        )
                    )
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(graph[nxt]))
    return problems


def _lines_in_range(policy: Policy, evaluations: set[str]) -> list[Problem]:
    """Evaluation lines that the bound metric can never reach (a rate above 1, say)."""
    problems: list[Problem] = []
    for i, t in enumerate(policy.capability_thresholds):
        for j, b in enumerate(t.evaluations):
            if b.evaluation not in evaluations:
                continue  # reported as unknown already
            metric = b.metric or policy.evaluation(b.evaluation).metric
            span = metric_range(metric)
            if span is None:
                continue
            lo, hi = span
            for name in ("rule_out", "alert", "threshold"):
                value = getattr(b, name)
                if value is not None and not lo <= value <= hi:
                    problems.append(
                        Problem(
                            f"{value:g} is outside the range of {quote(metric)} "
                            f"[{lo:g}, {hi:g}]; give a line within it",
                            field=f"capability_thresholds[{i}].evaluations[{j}].{name}",
                        )
                    )
    return problems


def iter_policy_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand folders into the policy files they hold (``*.yaml``, ``*.yml``, ``*.json``)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(
                q for q in p.rglob("*") if q.suffix in {".yaml", ".yml", ".json"} and q.is_file()
            )
        else:
            yield p
