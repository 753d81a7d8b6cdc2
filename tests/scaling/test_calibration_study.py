"""scripts/calibration_study.py: the calibration sets' figures in docs/scaling.md, repeatably."""

import pytest

from tests._scripts import script_module


@pytest.fixture(scope="module")
def study():
    with script_module("calibration_study") as module:
        yield module


def _pooled(out: str, kind: str) -> float:
    block = out.split(f"{kind}: nominal 90% intervals")[1]
    line = next(x for x in block.splitlines() if x.strip().startswith("pooled"))
    return float(line.split()[1])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--sets", "public,nope"], "--sets: choose from public, one, multi"),
        (["--seeds", "1000"], "1000 is not a calibration seed"),
        (["--seeds", "1040"], "1040 is not a calibration seed"),
        (["--seeds", "2x0"], "--seeds: '2x0': write seeds as"),
        (["--seeds", "300-200"], "a range low-high"),
        (["--seeds", "200-203,201"], "seed 201 is given twice"),
        (["--jobs", "0"], "--jobs: 1 to 64"),
        (["--candidate", "no/such/file.py"], "--candidate: no/such/file.py: no such file"),
    ],
)
def test_usage_errors_are_one_line_and_exit_two(study, capsys, args, says) -> None:
    with pytest.raises(SystemExit) as exc:
        study.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_a_candidate_without_calibrate_is_refused(study, capsys, tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(SystemExit) as exc:
        study.main(["--candidate", str(bad), "--sets", "one", "--seeds", "200"])
    assert exc.value.code == 2
    assert "defines neither calibrate() nor sampling_only()" in capsys.readouterr().err


def test_a_candidate_replaces_the_error_model(study, capsys, tmp_path, monkeypatch) -> None:
    # The same ladder scored with the package's error model and with one whose scale is a
    # hundred times as wide: the second covers everything, the first does not on this seed
    # (a calibration seed whose record, fitted before the rise, is wide but not that wide).
    import safescale.scaling._capability as capability

    monkeypatch.setattr(capability, "calibrate", capability.calibrate)  # restored afterwards
    wide = tmp_path / "wide.py"
    wide.write_text(
        "import dataclasses\n"
        "from safescale.scaling._calibration import calibrate as real\n"
        "def calibrate(method, data, *, sigma, min_train=4, max_cuts=8):\n"
        "    cal = real(method, data, sigma=sigma, min_train=min_train, max_cuts=max_cuts)\n"
        "    return cal and dataclasses.replace(cal, s0=100 * cal.s0, growth=100 * cal.growth)\n"
    )
    assert study.main(["--sets", "multi", "--seeds", "201"]) == 0
    base = capsys.readouterr().out
    assert study.main(["--sets", "multi", "--seeds", "201", "--candidate", str(wide)]) == 0
    widened = capsys.readouterr().out
    assert _pooled(widened, "multi") == 1.0
    assert _pooled(base, "multi") < 1.0


def _figure(out: str, name: str) -> tuple[float, int]:
    line = next(x for x in out.splitlines() if x.strip().startswith(name + " "))
    return float(line.split()[1]), int(line.rsplit("n=", 1)[1])


@pytest.mark.slow
def test_the_public_calibration_table_figures_repeat(study, capsys) -> None:
    # docs/scaling.md, "Where it stands": the public calibration table covers 0.923 pooled
    # (324 predictions), BBH 0.864 and MATH level 5 0.889 (the binding benchmarks, 81 each).
    # Within a prediction or two: one that lies on its interval's edge may fall either side
    # on another CPU's arithmetic.
    assert study.main(["--sets", "public"]) == 0
    out = capsys.readouterr().out
    for name, value, n, slack in (
        ("pooled", 0.923, 324, 3),
        ("bbh", 0.864, 81, 2),
        ("math_hard", 0.889, 81, 2),
    ):
        got, m = _figure(out, name)
        assert m == n and abs(got - value) <= slack / n, (name, got, m)


def test_a_candidate_can_replace_the_sampling_rule(study, capsys, tmp_path, monkeypatch) -> None:
    # The benchmark-size rule replaced by one that never sets the record aside: the figures
    # are those without the sizes, and the overdispersion is still reported.
    import safescale.scaling._capability as capability

    monkeypatch.setattr(capability, "sampling_only", capability.sampling_only)  # restored
    keep = tmp_path / "keep.py"
    keep.write_text(
        "import dataclasses\n"
        "from safescale.scaling._calibration import forecast_spread, overdispersion\n"
        "def sampling_only(cal, data, point, questions):\n"
        "    phi = overdispersion(data.score, forecast_spread(data, point), questions)\n"
        "    return dataclasses.replace(cal, overdispersion=phi)\n"
    )
    args = ["--sets", "one", "--seeds", "206-207"]  # the rule narrows an interval past one score
    assert study.main([*args, "--no-questions"]) == 0
    without = capsys.readouterr().out
    assert study.main([*args, "--candidate", str(keep)]) == 0
    kept = capsys.readouterr().out
    monkeypatch.undo()
    assert study.main(args) == 0
    sized = capsys.readouterr().out
    assert _pooled(kept, "one") == _pooled(without, "one") > _pooled(sized, "one")
    assert "overdispersion: " in kept and "overdispersion: " not in without
