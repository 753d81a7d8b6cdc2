"""``safescale demo``: the whole loop on the built-in lab, ending with a report."""

from safescale.demo._demo import DEMO_POLICY, DemoResult, run_demo

__all__ = ["DEMO_POLICY", "DemoResult", "run_demo"]
