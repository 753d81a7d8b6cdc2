"""``safescale policy ...`` through the real command, and the schema round trip."""

from __future__ import annotations

import json
from pathlib import Path

from safescale.policy import Duration, builtin_ids, diff_policies, load_builtin, load_policy


def test_list_shows_every_builtin(run_cli):
    code, out, _ = run_cli("policy", "list", "--json")
    assert code == 0
    assert {p["id"] for p in json.loads(out)} == set(builtin_ids())


def test_show_json_round_trips_through_validate(run_cli, tmp_path):
    for pid in builtin_ids():
        code, out, _ = run_cli("policy", "show", pid, "--json")
        assert code == 0
        path = tmp_path / f"{pid}.json"
        path.write_text(out)
        code, _, err = run_cli("policy", "validate", str(path))
        assert code == 0, err
        assert load_policy(path) == load_builtin(pid)


def test_show_yaml_round_trips(run_cli, tmp_path):
    code, out, _ = run_cli("policy", "show", "lab", "--yaml")
    path = tmp_path / "lab.yaml"
    path.write_text(out)
    assert load_policy(path) == load_builtin("lab")


def test_rsp_exposes_thresholds_safeguards_and_triggers(run_cli):
    code, out, _ = run_cli("policy", "show", "anthropic-rsp-2.2", "--json")
    data = json.loads(out)
    by_id = {t["id"]: t for t in data["capability_thresholds"]}
    assert {"CBRN-3", "CBRN-4", "AI-RD-4", "AI-RD-5"} <= set(by_id)
    assert by_id["CBRN-3"]["required_safeguards"]["all_of"] == [
        "ASL-3-Deployment",
        "ASL-3-Security",
    ]
    assert by_id["AI-RD-5"]["required_safeguards"]["all_of"] == ["ASL-4-Security"]
    triggers = {t["id"]: t for t in data["assessment_triggers"]}
    assert triggers["notably-more-capable-compute"]["ratio"] == 4
    assert triggers["notably-more-capable-post-training"]["interval"] == "P6M"
    assert data["decision_rules"]["cannot_rule_out"] == "treat_as_crossed"
    assert data["unmet_safeguards"]["training_pause"]["ratio"] == 1.0


def test_validate_reports_each_problem_on_one_line(run_cli, tmp_path):
    data = load_builtin("lab").to_dict()
    data["capability_thresholds"][0]["required_safeguards"]["all_of"] = ["LAB-DEPLOY-9"]
    data["decisions"][0]["decided_by"] = ["ceo"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, indent=1))
    code, out, err = run_cli("policy", "validate", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert "capability_thresholds[0].required_safeguards.all_of[0]" in lines[0]
    assert "unknown safeguard_standard id 'LAB-DEPLOY-9'; did you mean 'LAB-DEPLOY-2'?" in lines[0]
    assert lines[0].startswith(f"error: {path}:")
    assert "decisions[0].decided_by[0]" in lines[1]
    assert "Traceback" not in err


def test_missing_policy_is_a_user_error(run_cli):
    code, _, err = run_cli("policy", "show", "no-such-policy")
    assert code == 2 and "built-ins are" in err


def test_schema_is_valid_json_schema(run_cli):
    code, out, _ = run_cli("policy", "schema")
    schema = json.loads(out)
    assert schema["title"] == "Policy" and "capability_thresholds" in schema["properties"]
    import jsonschema

    for pid in builtin_ids():
        jsonschema.validate(load_builtin(pid).to_dict(), schema)


def test_diff_names_changed_lines_and_triggers(run_cli, tmp_path):
    data = load_builtin("lab").to_dict()
    data["framework"]["version"] = "1.1"
    data["capability_thresholds"][0]["evaluations"][0]["alert"] = 0.45
    data["assessment_triggers"][0]["ratio"] = 2
    data["assessment_triggers"].reverse()  # order alone is no change
    for t in data["capability_thresholds"]:  # nor the order of bindings or required safeguards
        t["evaluations"].reverse()
        t["required_safeguards"] = {k: v[::-1] if k == "all_of" else v
                                    for k, v in t["required_safeguards"].items()}  # fmt: skip
    data["capability_thresholds"][1]["required_safeguards"]["all_of"].append("LAB-BASE")
    path = tmp_path / "lab-1.1.json"
    path.write_text(json.dumps(data))
    changes = diff_policies(load_builtin("lab"), load_policy(path))
    assert {(c.section, c.path) for c in changes} == {
        ("framework", "version"),
        # the changed line itself, not the whole list of bindings
        ("capability_thresholds", "[LAB-HAZARD-1].evaluations[lab-hazard-proxy-mc].alert"),
        ("capability_thresholds", f"[{data['capability_thresholds'][1]['id']}]"
                                  ".required_safeguards.all_of[LAB-BASE]"),
        ("assessment_triggers", "[notably-more-capable-compute].ratio"),
    }  # fmt: skip
    code, out, _ = run_cli("policy", "diff", "lab", str(path))
    assert code == 0 and "[notably-more-capable-compute].ratio: 4.0 -> 2.0" in out


def test_duration_calendar_arithmetic():
    from datetime import datetime

    assert Duration("P6M").add_to(datetime(2025, 8, 31)) == datetime(2026, 2, 28)
    assert Duration("P1Y").add_to(datetime(2024, 2, 29)) == datetime(2025, 2, 28)
    assert Duration("P14D").days() == 14
    assert Duration("PT12H").days() == 0.5
    for bad in ("P", "6M", "P6X", "PT", ""):
        try:
            Duration(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_alias_bomb_is_refused_quickly(tmp_path):
    import time

    from safescale.policy import check_policy_text

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    start = time.perf_counter()
    policy, problems = check_policy_text("\n".join(lines))
    assert policy is None and "anchors and aliases" in str(problems[0])
    assert time.perf_counter() - start < 5


def test_diff_rsp_versions_names_the_cadence_change_once(run_cli):
    code, out, _ = run_cli("policy", "diff", "anthropic-rsp-1.0", "anthropic-rsp-2.2", "--json")
    changes = json.loads(out)
    keys = [(c["section"], c["path"]) for c in changes]
    assert len(keys) == len(set(keys))
    cadence = {c["path"]: c for c in changes if c["section"] == "assessment_triggers"}
    step = cadence["[notably-more-capable-post-training].interval"]
    assert (step["old"], step["new"]) == ("P3M", "P6M")


def test_validate_escapes_file_names(run_cli, tmp_path):
    """A newline or a terminal escape in a file name went to the terminal as it was."""
    good = tmp_path / "bad\nname.yaml"
    good.write_text((Path(__file__).parent / "minimal.yaml").read_text())
    bad = tmp_path / "e\x1b[31mvil.yaml"
    bad.write_text("x: [")
    code, out, err = run_cli("policy", "validate", str(good), str(bad))
    assert code == 2
    assert out.strip().splitlines() == [f"ok: {tmp_path}/bad\\x0aname.yaml (minimal 1)"]
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}/e\\x1b[31mvil.yaml:1: ") and "\x1b" not in line


def test_validate_says_a_folder_holds_no_policy(run_cli, tmp_path):
    """It said to give a file or folder, when a folder was given."""
    code, _, err = run_cli("policy", "validate", str(tmp_path))
    (line,) = err.strip().splitlines()
    assert (
        code == 2
        and line.startswith("error: '")
        and line.endswith(
            "': no policy file (.yaml, .yml or .json) in it; give a policy file, or a folder that "
            "holds some"
        )
    )
