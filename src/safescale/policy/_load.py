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
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from safescale._errors import Problem, UserError
from safescale._input import escape_controls, quote, read_limited
from safescale.policy._records import canonical_json
from safescale.policy._schema import Policy, metric_range

MAX_POLICY_BYTES = 5 * 1024 * 1024
"""Policy files above this size are refused before parsing (real policies are ~100 kB)."""

MAX_POLICY_NODES = 200_000
"""Values a policy may expand to; stops anchor-and-alias bombs (real policies have ~3,000)."""


class _PolicyLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so pydantic parses them and names the field."""


_PolicyLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _TooBig(Exception):
    pass


Path_ = tuple[str | int, ...]


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
    raw, lines, problems = read_yaml(text, source, what="a policy")
    if problems:
        return None, problems
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
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        return None, [_from_pydantic(err, raw, lines, source) for err in exc.errors()]
    problems = [
        Problem(p.message, source=source, line=_line_for(lines, p.field), field=p.field)
        for p in check_references(policy)
    ]
    return (None if problems else policy), problems


def read_yaml(text: str, source: str, *, what: str) -> tuple[Any, dict[Path_, int], list[Problem]]:
    """Parse YAML text; (the value, the line of every value by path, problems).

    Problems are a syntax error, nesting too deep, an alias bomb, or duplicate keys (YAML
    silently keeps the last of those). ``what`` names the document in messages (``a policy``).
    """
    lines: dict[Path_, int] = {}
    dupes: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=_PolicyLoader)
        if node is not None:
            _index_lines(node, (), lines, dupes, source, [0])
        raw = yaml.load(text, Loader=_PolicyLoader)
    except yaml.YAMLError as exc:
        return None, lines, [_yaml_problem(exc, source, text)]
    except RecursionError:
        return (
            None,
            lines,
            [
                Problem(
                    f"the YAML is nested too deeply to read; {what} is only a few "
                    "levels deep (unbalanced brackets?)",
                    source=source,
                )
            ],
        )
    except _TooBig:
        return (
            None,
            lines,
            [
                Problem(
                    f"the YAML expands to more than {MAX_POLICY_NODES:,} values "
                    f"(anchors and aliases?); {what} is far smaller",
                    source=source,
                )
            ],
        )
    return raw, lines, dupes


def _yaml_problem(exc: yaml.YAMLError, source: str, text: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses: its position only
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(
            f"invalid YAML: the character {escape_controls(char)} is not allowed; remove it "
            "or write it as an escape in a double-quoted string",
            source=source,
            line=line,
        )
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and start is not None and (line is None or start.line + 1 != line):
        what += f" ({context}, which starts on line {start.line + 1})"
    return Problem(f"invalid YAML: {what}; fix the syntax", source=source, line=line)


def _index_lines(
    node: yaml.Node,
    path: Path_,
    out: dict[Path_, int],
    dupes: list[Problem],
    source: str,
    budget: list[int],
) -> None:
    """Record the line of every value by path; report duplicate mapping keys."""
    budget[0] += 1
    if budget[0] > MAX_POLICY_NODES:
        raise _TooBig
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dupes.append(
                    Problem(
                        f"key '{key}' appears twice in the same mapping; keep one",
                        source=source,
                        line=key_node.start_mark.line + 1,
                        field=_fmt((*path, key)),
                    )
                )
            seen.add(key)
            out[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), out, dupes, source, budget)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), out, dupes, source, budget)


def _fmt(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse_field(field: str | None) -> Path_:
    if not field:
        return ()
    parts: list[str | int] = []
    for chunk in field.replace("]", "").split("."):
        head, *idx = chunk.split("[")
        if head:
            parts.append(head)
        parts.extend(int(i) for i in idx)
    return tuple(parts)


def _line_for(lines: dict[Path_, int], field: str | None) -> int | None:
    path = _parse_field(field)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _data_path(loc: tuple[Any, ...], raw: Any) -> Path_:
    """Pydantic's error location, less the tags it adds for unions, as a path into ``raw``."""
    out: list[str | int] = []
    cur = raw
    for part in loc:
        if isinstance(cur, dict) and isinstance(part, str):
            if part in cur:
                out.append(part)
                cur = cur[part]
            elif part == "schema_" and "schema" in cur:
                out.append("schema")
                cur = cur["schema"]
            elif cur.get("kind") == part:  # discriminated-union tag
                continue
            else:
                out.append(part)
                cur = None
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(part, (str, int)):
            out.append(part)
            cur = None
    return tuple(out)


def _from_pydantic(err: Any, raw: Any, lines: dict[Path_, int], source: str) -> Problem:
    path = _data_path(tuple(err["loc"]), raw)
    field = _fmt(path)
    line = _line_for(lines, field)
    kind = err["type"]
    if kind == "missing":
        msg = "required field is missing; add it"
    elif kind == "extra_forbidden":
        allowed = _allowed_fields(path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1) if allowed else []
        hint = f"did you mean '{close[0]}'?" if close else "remove it or fix its spelling"
        msg = f"unknown field; {hint}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        field = f"{field}.kind" if field else "kind"
        line = _line_for(lines, field)
        expected = err.get("ctx", {}).get("expected_tags", "")
        msg = f"unknown kind {quote(err.get('ctx', {}).get('tag', ''))}; use one of {expected}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        got = err.get("input")
        what = "a list" if isinstance(got, list) else quote(got)
        msg = f"expected a mapping of fields here, got {what}"
    elif kind == "literal_error":
        msg = f"{err['msg'].replace('Input should be', 'must be')}"
    else:
        msg = err["msg"].replace("Value error, ", "")
        msg = msg[0].lower() + msg[1:] if msg else msg
        got = err.get("input")
        if not isinstance(got, (dict, list)) and got is not None and kind != "value_error":
            msg += f" (got {quote(got)})"
    return Problem(msg, source=source, line=line, field=field or None)


def _allowed_fields(path: Path_) -> list[str]:
    """Field names allowed at ``path`` of a policy (for did-you-mean hints)."""
    model: Any = Policy
    for part in path:
        if isinstance(part, int):
            continue
        fields = model.model_fields if _is_model(model) else {}
        key = "schema_" if part == "schema" else part
        if key not in fields:
            return []
        model = _inner_model(fields[key].annotation)
        if model is None:
            return []
    if not _is_model(model):
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _inner_model(tp: Any) -> Any:
    if _is_model(tp):
        return tp
    for arg in get_args(tp):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


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
