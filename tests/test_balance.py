"""Balancing an existing, strongly skewed dataset."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import ScriptedEngine, leaf_index, read_jsonl, scripted_lms
from test_cli_errors import assert_usage_error
from test_run_e2e import treesynth

from treesynth.balance import Balancer, BalanceTarget
from treesynth.balance.dataset import InputDataset, InputRecord
from treesynth.balance.export import RecordShape
from treesynth.balance.routing import check_assignments
from treesynth.config import RunConfig
from treesynth.models import FirstSplit, Task
from treesynth.signatures import NONE_FITS
from treesynth.testing.fake_lm import fake_answer, parse_inputs

TASK = Task(description="grade-school math word problems",
            first_split=FirstSplit(criterion="difficulty", values=["easy", "medium", "hard"]))


def skewed(path: Path, n: int = 2400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as handle:
        for i in range(n):
            level = rng.choices(["easy", "medium", "hard"], [85, 12, 3])[0]
            op = rng.choices(["addition", "subtraction", "multiplication", "division"], [70, 20, 5, 5])[0]
            handle.write(json.dumps({"uid": i, "text": f"A {level} {op} problem, case {i}.", "meta": {"k": i % 7}})
                         + "\n")
    return path


def config(**extra: Any) -> RunConfig:
    base = {"model.model": "test/fake", "tree.depth": 2, "tree.width": 4, "tree.pivots": 6,
            "synthesis.samples_per_call": 5}
    return RunConfig().with_overrides({**base, **extra})


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("balance")
    data = skewed(root / "data.jsonl")
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    result = Balancer(config()).balance(data, TASK, root / "out", BalanceTarget(per_leaf=100))
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest, "the input file was modified"
    return data, root / "out", result.summary


def test_every_leaf_reaches_its_target_and_entropy_rises(balanced: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, summary = balanced
    counts = summary["counts"]
    assert summary["status"] == "complete"
    rows = read_jsonl(out / "balanced.jsonl")
    per_leaf: dict[str, int] = {}
    for row in rows:
        per_leaf[row["leaf_id"]] = per_leaf.get(row["leaf_id"], 0) + 1
    assert set(per_leaf.values()) == {100} and len(per_leaf) == counts["leaves"]
    assert counts["synthesized"] > 0, "the 3% 'hard' branch must have been topped up"
    before, after = summary["distribution"]["before"], summary["distribution"]["after"]
    assert after["normalized_entropy"] > before["normalized_entropy"] + 0.2
    assert after["gini"] < before["gini"]


def test_every_input_record_is_accounted_for(balanced: tuple[Path, Path, dict[str, Any]]) -> None:
    data, out, summary = balanced
    counts = summary["counts"]
    assert counts["kept"] + counts["downsampled"] + counts["duplicate"] + counts["unrouted"] == counts["input"] == 2400
    routing = read_jsonl(out / "routing.jsonl")
    assert [r["line"] for r in routing] == list(range(1, 2401))
    unrouted = sum(r["status"] == "unrouted" for r in routing)
    assert unrouted == counts["unrouted"] == len(read_jsonl(out / "unrouted.jsonl"))
    originals = {json.dumps(json.loads(line), sort_keys=True) for line in data.read_text().splitlines()}
    for row in read_jsonl(out / "balanced.jsonl"):
        assert row["origin"] in ("original", "synthesized") and row["path"]
        if row["origin"] == "original":
            verbatim = {k: v for k, v in row.items() if k not in ("origin", "leaf_id", "path")}
            assert json.dumps(verbatim, sort_keys=True) in originals
        else:
            # synthesized rows carry the originals' columns: text filled, the other columns null
            assert list(row) == ["uid", "text", "meta", "origin", "leaf_id", "path"]
            assert row["uid"] is None and row["meta"] is None and row["text"].strip()


def test_routing_is_batched(balanced: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, summary = balanced
    assert summary["routing"]["calls_per_sample_per_level"] < 0.1
    assert (out / "report.md").read_text().count("|") > 10 and (out / "leaf_distribution.png").stat().st_size > 1000


def test_resume_routes_nothing_twice(balanced: tuple[Path, Path, dict[str, Any]]) -> None:
    data, out, summary = balanced
    again = Balancer(config()).balance(data, TASK, out, BalanceTarget(per_leaf=100)).summary
    assert again["llm"]["calls"] == summary["llm"]["calls"]
    assert again["counts"] == summary["counts"]


def test_routing_is_order_independent(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    data, out, _ = balanced
    lines = data.read_text().splitlines()
    random.Random(3).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(lines) + "\n")
    first = Balancer(config()).balance(data, TASK, tmp_path / "a", BalanceTarget(per_leaf=10), tree=out / "tree.json")
    second = Balancer(config()).balance(shuffled, TASK, tmp_path / "b", BalanceTarget(per_leaf=10),
                                        tree=out / "tree.json")
    assert first.summary["counts"]["unrouted"] == second.summary["counts"]["unrouted"]

    def leaves(run: Path, source: Path) -> dict[int, str | None]:
        uids = [json.loads(line)["uid"] for line in source.read_text().splitlines()]
        return {uids[r["line"] - 1]: r.get("leaf_id") for r in read_jsonl(run / "routing.jsonl")}

    assert leaves(tmp_path / "a", data) == leaves(tmp_path / "b", shuffled)


def positional(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
    """A routing model that ignores the text: the answer depends on the sample's position in its batch and the seed."""
    answer = json.loads(fake_answer(prompt, schema, seed))
    if "assignments" in answer:
        options = [o for o in parse_inputs(prompt)["options"] if o != NONE_FITS]
        for item in answer["assignments"]["items"]:
            item["value"] = options[(item["sample"] * 7 + (seed or 0)) % len(options)]
    return json.dumps(answer)


def test_batches_and_seeds_depend_only_on_content(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    _, out, _ = balanced
    data = skewed(tmp_path / "data.jsonl", n=300, seed=5)
    lines = data.read_text().splitlines()
    random.Random(4).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(lines) + "\n")

    def routing(source: Path, run: str) -> dict[int, tuple[Any, ...]]:
        Balancer(config(), lms=scripted_lms(ScriptedEngine(positional)), batch_size=7).balance(
            source, TASK, tmp_path / run, BalanceTarget(per_leaf=15), tree=out / "tree.json")
        uids = [json.loads(line)["uid"] for line in source.read_text().splitlines()]
        return {uids[r["line"] - 1]: (r.get("leaf_id"), r["status"], json.dumps(r["path"]))
                for r in read_jsonl(tmp_path / run / "routing.jsonl")}

    first, second = routing(data, "a"), routing(shuffled, "b")
    assert len({leaf for leaf, _, _ in first.values()}) > 3, "the positional router must spread samples out"
    assert first == second


def test_bad_replies_are_retried_not_lost(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    data, out, _ = balanced
    corrupted = {"n": 0}

    def sloppy(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        answer = json.loads(fake_answer(prompt, schema, seed))
        if "assignments" in answer and corrupted["n"] < 40:
            corrupted["n"] += 1
            items = answer["assignments"]["items"]
            items[1] = dict(items[0])                      # a duplicated id (and a dropped one)
            items[2] = {**items[2], "sample": 999}          # an invented id
        return json.dumps(answer)

    clean = Balancer(config()).balance(data, TASK, tmp_path / "clean", BalanceTarget(per_leaf=10),
                                       tree=out / "tree.json")
    noisy = Balancer(config(), lms=scripted_lms(ScriptedEngine(sloppy))).balance(
        data, TASK, tmp_path / "noisy", BalanceTarget(per_leaf=10), tree=out / "tree.json")
    assert corrupted["n"] == 40
    assert noisy.summary["counts"]["unrouted"] == clean.summary["counts"]["unrouted"]
    assert read_jsonl(tmp_path / "noisy" / "routing.jsonl") == read_jsonl(tmp_path / "clean" / "routing.jsonl")
    assert noisy.summary["routing"]["calls"] > clean.summary["routing"]["calls"]


def test_check_assignments() -> None:
    valid, retry = check_assignments([1, 2, 3, 4], [(1, "a"), (2, "b"), (2, "a"), (9, "a"), (4, "zzz")], ["a", "b"])
    assert valid == {1: "a"} and retry == [2, 3, 4]


def test_structured_records_keep_their_fields(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    with data.open("w") as handle:
        for i in range(60):
            handle.write(json.dumps({"question": f"easy question {i}?", "answer": str(i), "n": i}) + "\n")
    result = Balancer(config(**{"tree.depth": 1})).balance(data, TASK, tmp_path / "o", BalanceTarget(per_leaf=8),
                                                           text_field="{question} {answer}")
    rows = read_jsonl(tmp_path / "o" / "balanced.jsonl")
    assert len(rows) == 24 and result.summary["counts"]["synthesized"] == 16  # medium and hard were empty
    assert {tuple(r) for r in rows} == {("question", "answer", "n", "origin", "leaf_id", "path")}
    synthesized = [r for r in rows if r["origin"] == "synthesized"]
    assert all(r["n"] is None and r["question"] and r["answer"] for r in synthesized)


def test_records_with_a_fields_object_get_synthesized_fields(tmp_path: Path) -> None:
    data = tmp_path / "nested.jsonl"
    with data.open("w") as handle:
        for i in range(40):
            handle.write(json.dumps({"id": i, "fields": {"question": f"easy question {i}?", "answer": str(i)}}) + "\n")
    result = Balancer(config(**{"tree.depth": 1})).balance(data, TASK, tmp_path / "o", BalanceTarget(per_leaf=5))
    rows = read_jsonl(tmp_path / "o" / "balanced.jsonl")
    assert result.summary["counts"]["synthesized"] == 10
    assert {tuple(r) for r in rows} == {("id", "fields", "origin", "leaf_id", "path")}
    assert all(set(r["fields"]) == {"question", "answer"} and all(r["fields"].values()) for r in rows)


def test_synthesized_rows_take_the_originals_shape() -> None:
    records = [InputRecord(1, {"id": 7, "fields": {"question": "q?", "answer": "a"}, "tags": ["x"]}, "q? a"),
               InputRecord(2, {"id": 8, "fields": {"question": "r?", "answer": "b", "hint": "h"}}, "r? b")]
    shape = RecordShape.of(InputDataset(Path("d.jsonl"), records, "{question} {answer}", ["question", "answer"]))
    row = shape.fill({"question": "new?", "answer": "c"})
    assert row == {"id": None, "fields": {"question": "new?", "answer": "c", "hint": None}, "tags": None}
    assert shape.fill({"text": "t"}) == {"id": None, "fields": {"question": None, "answer": None, "hint": None},
                                         "tags": None, "text": "t"}


def test_bad_inputs(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    data, out, _ = balanced
    args = ["balance", str(data), "--model", "test/fake", "--depth", "2"]
    assert_usage_error(treesynth(*args, "--task", "math", "--per-leaf", "5", "--field", "nope", "--out",
                                 str(tmp_path / "a")), "missing field 'nope'", ":1:")
    not_jsonl = tmp_path / "data.csv"
    not_jsonl.write_text("a,b\n1,2\n")
    assert_usage_error(treesynth("balance", str(not_jsonl), "--task", "math", "--per-leaf", "5", "--model",
                                 "test/fake", "--out", str(tmp_path / "b")), "not valid JSON", ":1:")
    assert_usage_error(treesynth(*args, "--task", "poems", "--tree", str(out / "tree.json"), "--per-leaf", "5",
                                 "--out", str(tmp_path / "c")), "built for the task")
    assert_usage_error(treesynth(*args, "--task", "math", "--total", "0", "--out", str(tmp_path / "d")),
                       "at least 1")
    for name in "abcd":
        assert not (tmp_path / name).exists(), f"a failing command created its --out {name}"
    before = (out / "balanced.jsonl").read_bytes()
    assert_usage_error(treesynth(*args, "--task", "other data", "--per-leaf", "5", "--out", str(out)),
                       "different task")
    assert (out / "balanced.jsonl").read_bytes() == before


@pytest.mark.parametrize(("dist", "tree", "needle"), [
    ({"total": 0, "weights": {"x": 1}}, False, "at least 1"),
    ({"total": 10, "weights": {"x": 0}}, False, "not all zero"),
    ({"total": 10, "weights": ["x"]}, False, "expected"),
    ("not json", False, "not readable JSON"),
    ({"total": 10, "weights": {"no-such-leaf": 1.0}}, True, "unknown leaf ids ['no-such-leaf']"),
])
def test_bad_target_dist_fails_before_any_call(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path,
                                               dist: Any, tree: bool, needle: str) -> None:
    data, out, _ = balanced
    spec = tmp_path / "dist.json"
    spec.write_text(dist if isinstance(dist, str) else json.dumps(dist))
    extra = ["--tree", str(out / "tree.json")] if tree else []
    done = treesynth("balance", str(data), "--task", TASK.description, "--model", "test/fake", "--target-dist",
                     str(spec), *extra, "--out", str(tmp_path / "run"))
    assert_usage_error(done, "--target-dist", needle)
    assert not (tmp_path / "run").exists(), "no run store may be left behind"


def test_target_dist_sets_the_quotas(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    data, out, _ = balanced
    leaves = [leaf for leaf in leaf_index(json.loads((out / "tree.json").read_text()))]
    spec = tmp_path / "dist.json"
    spec.write_text(json.dumps({"total": 30, "weights": {leaves[0]: 2, leaves[1]: 1}}))
    result = Balancer(config()).balance(data, TASK, tmp_path / "run", BalanceTarget(distribution=spec),
                                        tree=out / "tree.json")
    assert result.summary["allocation"]["quota"] == {**dict.fromkeys(leaves, 0), leaves[0]: 20, leaves[1]: 10}


PLAIN = Task(description="grade-school math word problems")


def test_own_tree_draws_pivots_from_the_data(balanced: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    data, out, _ = balanced
    texts = {json.loads(line)["text"] for line in data.read_text().splitlines()}
    tree = json.loads((out / "tree.json").read_text())
    expanded = [node for node in _walk(tree["root"]) if node["pivots"]]
    assert len(expanded) >= 3, "every node under the predefined first split grows its own pivots"
    for node in expanded:
        assert set(node["pivots"]) <= texts, f"{node['id']}: with thousands of records every pivot is a real sample"
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text("".join(json.dumps({"text": t}) + "\n" for t in sorted(texts)[:3]))
    Balancer(config(**{"tree.depth": 1})).balance(tiny, PLAIN, tmp_path / "o", BalanceTarget(per_leaf=2))
    root = json.loads((tmp_path / "o" / "tree.json").read_text())["root"]
    real = [p for p in root["pivots"] if p in texts]
    assert sorted(real) == sorted(texts)[:3], "every real sample is a pivot"
    assert len(root["pivots"]) == 6 and len(root["pivots"]) - len(real) == 3, "the rest are generated"


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _walk(child))]


def test_infinite_child_records_concrete_values(tmp_path: Path) -> None:
    data = skewed(tmp_path / "data.jsonl", n=40)
    result = Balancer(config(**{"tree.width": 2})).balance(data, PLAIN, tmp_path / "o", BalanceTarget(per_leaf=50))
    tree = json.loads((tmp_path / "o" / "tree.json").read_text())
    pools = {node["id"]: node["value"] for node in _walk(tree["root"]) if node["infinite"]}
    assert pools, "width 2 must give the tree an infinite child"
    paths = leaf_index(tree)
    rows = read_jsonl(tmp_path / "o" / "balanced.jsonl")
    assert {r["origin"] for r in rows} == {"original", "synthesized"} and result.summary["counts"]["synthesized"]
    for row in rows:
        spec = paths[row["leaf_id"]]["path"]
        assert len(row["path"]) == len(spec)
        for step, (criterion, value, infinite) in zip(row["path"], spec, strict=True):
            assert step["criterion"] == criterion and isinstance(step["value"], str), row
            assert step["value"] in value if infinite else step["value"] == value, row


def test_top_up_prompts_show_the_leaf_samples(tmp_path: Path) -> None:
    data = skewed(tmp_path / "data.jsonl", n=60)
    prompts: list[dict[str, Any]] = []

    class Spy(ScriptedEngine):
        def _respond(self, request: Any) -> Any:
            inputs = parse_inputs("\n".join(m.text or "" for m in request.messages))
            if "avoid" in inputs:
                prompts.append(inputs)
            return super()._respond(request)

    Balancer(config(**{"tree.depth": 1}), lms=scripted_lms(Spy())).balance(data, TASK, tmp_path / "o",
                                                                           BalanceTarget(per_leaf=30))
    rows = read_jsonl(tmp_path / "o" / "balanced.jsonl")
    originals: dict[str, set[str]] = {}
    texts: dict[str, set[str]] = {}
    for row in rows:
        texts.setdefault(row["leaf_id"], set()).add(row["text"])
        if row["origin"] == "original":
            originals.setdefault(row["leaf_id"], set()).add(row["text"])
    assert prompts, "some leaf must have been topped up"
    by_subspace = {json.dumps(r["path"]): r["leaf_id"] for r in rows}
    showed_originals: set[str] = set()
    for inputs in prompts:
        leaf = next(leaf for path, leaf in by_subspace.items() if all(
            s["value"] in line for s, line in zip(json.loads(path), inputs["subspace"], strict=True)))
        shown = set(inputs["avoid"])
        # every prompt shows samples of its own leaf: originals first, then what top-up added
        assert shown and shown <= texts[leaf], (inputs["subspace"], inputs["avoid"][:2])
        if shown & originals[leaf]:
            showed_originals.add(leaf)
    assert showed_originals == {leaf for leaf in originals if any(
        leaf == next(lf for path, lf in by_subspace.items() if all(
            s["value"] in line for s, line in zip(json.loads(path), p["subspace"], strict=True))) for p in prompts)}


class Interrupted(BaseException):
    """Stands in for a kill: not an Exception, so no retry layer swallows it."""


def test_interrupted_balance_resumes_exactly(tmp_path: Path) -> None:
    data = skewed(tmp_path / "data.jsonl", n=300, seed=2)
    routing_calls = {"n": 0, "stop": 0}

    def counting(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        if schema and "assignments" in schema.get("properties", {}):
            routing_calls["n"] += 1
            if routing_calls["n"] == routing_calls["stop"]:
                raise Interrupted
        return fake_answer(prompt, schema, seed)

    def run(out: Path) -> None:
        Balancer(config(), lms=scripted_lms(ScriptedEngine(counting)), batch_size=10).balance(
            data, TASK, out, BalanceTarget(per_leaf=20))

    def routes(out: Path) -> int:
        with sqlite3.connect(out / "treesynth.db") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM routes").fetchone()[0])

    run(tmp_path / "clean")
    routing_calls.update(stop=routing_calls["n"] * 2 // 3, n=0)  # after the root, inside the second level
    interrupted = False
    try:
        run(tmp_path / "resumed")
    except* Interrupted:
        interrupted = True
    assert interrupted and not (tmp_path / "resumed" / "balanced.jsonl").exists()
    assert 0 < routes(tmp_path / "resumed") < routes(tmp_path / "clean"), "interrupt in the middle of routing"
    routing_calls["stop"] = 0
    run(tmp_path / "resumed")
    for name in ("balanced.jsonl", "routing.jsonl", "unrouted.jsonl", "tree.json"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def test_a_call_cap_stops_balance_and_a_higher_cap_resumes_it(tmp_path: Path) -> None:
    from treesynth.errors import BudgetExceededError

    data = skewed(tmp_path / "data.jsonl", n=200)
    out = tmp_path / "capped"
    target = BalanceTarget(per_leaf=20)
    with pytest.raises(BudgetExceededError, match=r"--max-calls 4 .*higher --max-calls"):
        Balancer(config(**{"budget.max_calls": 4})).balance(data, TASK, out, target)
    with sqlite3.connect(out / "treesynth.db") as db:
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 4  # the calls in flight were booked
    done = Balancer(config(**{"budget.max_calls": 10_000})).balance(data, TASK, out, target)
    assert done.summary["status"] == "complete" and done.summary["llm"]["calls"] > 4
