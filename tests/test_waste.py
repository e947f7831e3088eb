"""Issue 15 #9: a plan that spreads the samples thinner than `--samples-per-call` warns, at plan time and at run
start, naming the fixes; the expected unused candidates match what the run then leaves unused."""

from __future__ import annotations

import json
from pathlib import Path

from test_run_e2e import treesynth

from treesynth.config import RunConfig
from treesynth.planning import analytic_plan, expected_unused, full_tree_quotas, waste_warnings

THIN = ["run", "GSM8K-style grade-school math word problems", "--model", "test/fake", "--depth", "3",
        "--width", "8", "-n", "200", "--samples-per-call", "5"]
"""Many leaves, few samples each (89 leaves on the fake model): the shape of the issue's run (300 samples over
144 leaves at 5 per call left 436 unused candidates)."""


def test_expected_unused_is_the_rounding_up_to_whole_calls() -> None:
    assert expected_unused([2, 3, 5, 0, 6], 5) == 3 + 2 + 0 + 0 + 4
    assert waste_warnings({"a": 5, "b": 10}, 5) == ()
    (line,) = waste_warnings({str(i): 2 for i in range(144)}, 5)
    assert "288 samples over 144 leaves is ~2.0 per leaf" in line and "~432 unused candidates" in line
    assert "lower --samples-per-call (e.g. 2), lower --depth or --width, or raise -n" in line


def test_full_tree_bound_counts_one_branch_per_first_split_value() -> None:
    from treesynth.models import FirstSplit, Task

    config = RunConfig().with_overrides({"tree.depth": 2, "tree.width": 3, "synthesis.samples": 70})
    task = Task(description="math", first_split=FirstSplit(criterion="subject", values=list("abcdefg")))
    quotas = full_tree_quotas(config, task)
    assert len(quotas) == 7 * 3 and sum(quotas.values()) == 70
    assert all(sum(q for k, q in quotas.items() if k.startswith(f"{v}/")) == 10 for v in "abcdefg")
    assert len(full_tree_quotas(config)) == 9
    plan = analytic_plan(config, "test/fake", task=task)
    assert (plan.leaves, plan.nodes, plan.tree_calls) == (21, 1 + 7 + 21, 7 * 3)  # the root's split costs nothing


def test_thin_plan_warns_at_plan_time_and_at_run_start(tmp_path: Path) -> None:
    analytic = treesynth(*THIN, "--out", str(tmp_path / "a"), "--dry-run", "--analytic")
    assert analytic.stderr.startswith("warning: 200 samples over up to 512 leaves is ~0.4 per leaf")
    out = tmp_path / "r"
    planned = treesynth(*THIN, "--out", str(out), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    (warning,) = [line for line in plan["warnings"] if "unused candidates" in line]
    assert f"warning: {warning}" in planned.stderr
    assert warning.startswith(f"200 samples over {plan['leaves']} leaves is ~2.2 per leaf")
    assert "lower --samples-per-call (e.g. 3), lower --depth or --width, or raise -n" in warning
    expected = int(warning.split("expect ~")[1].split(" ")[0])
    done = treesynth(*THIN, "--out", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"warning: {warning}")  # at run start, from the tree the plan grew
    run = json.loads((out / "run.json").read_text())
    counts, k = run["counts"], 5
    assert counts["leaves"] == plan["leaves"] and counts["unused_candidates"] > counts["samples"]  # the waste was real
    assert expected == sum(-(-q // k) * k - q for q in run["allocation"]["quota"].values())
    # every candidate is kept, unused, a duplicate or rejected: the unused ones beyond the expected rounding are
    # the top-up calls' candidates (calls beyond ceil(q / k) per leaf) less the duplicates they replaced
    leaf_calls = sum(row["calls"] for row in run["llm"]["by_stage"] if row["stage"] == "leaf")
    extra_calls = leaf_calls - sum(-(-q // k) for q in run["allocation"]["quota"].values())
    assert counts["unused_candidates"] == expected + k * extra_calls - counts["duplicates_removed"] - counts["rejected"]


def test_a_well_fed_plan_does_not_warn(tmp_path: Path) -> None:
    done = treesynth(*THIN[:-4], "-n", "300", "--samples-per-call", "1", "--dry-run", "--analytic",
                     "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
