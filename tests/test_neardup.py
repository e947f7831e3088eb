"""Near-duplicate removal: the MinHash rule, the run's accept path (rejected, replaced, resumed) and eval's rate."""

from __future__ import annotations

import gc
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from support import ScriptedEngine, read_jsonl, scripted_lms
from test_cli_options import invoke

from treesynth.cli.options import RunOptions, near_dup_threshold
from treesynth.errors import ConfigError
from treesynth.models import normalize
from treesynth.neardup import (
    NearDupIndex,
    NearDupScreen,
    near_duplicate_pairs,
    near_duplicate_rate,
    shingle_hashes,
    shingles,
)
from treesynth.pipeline import TreeSynth
from treesynth.store import RunStore
from treesynth.testing.fake_lm import fake_answer

MARIA = "Maria has twelve red apples and gives three of them to her brother before lunch; how many apples does she keep"
"""A 21-word problem; :func:`maria` ends it with a different word per call (Jaccard 20/22 = 0.909)."""
ENDINGS = ["today", "now", "afterwards", "tonight", "later", "altogether", "overall", "eventually", "finally"]


def maria(seed: int | None) -> str:
    """A near-duplicate of every other :func:`maria` (the same 21 words, then one of :data:`ENDINGS`)."""
    return f"{MARIA} {ENDINGS[(seed or 0) % len(ENDINGS)]}?"


def with_maria(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
    """The fake model, except that every synthesis batch starts with a near-duplicate of the Maria problem."""
    answer = json.loads(fake_answer(prompt, schema, seed))
    if "batch" in answer:
        answer["batch"]["samples"][0] = maria(seed)
    return json.dumps(answer)


def marias(out: Path) -> list[dict[str, Any]]:
    return [s for s in read_jsonl(out / "samples.jsonl") if str(s["text"]).startswith("Maria has twelve")]


# -- the rule -----------------------------------------------------------------------------------------


def test_shingles_are_word_pairs_with_a_character_fallback_for_short_texts() -> None:
    assert shingles("The cat sat on the mat, then ran away!") == {
        "the cat", "cat sat", "sat on", "on the", "the mat", "mat then", "then ran", "ran away"}
    short = shingles("Add 2 and 3.")
    assert short and all(s.startswith("\x00") and len(s) == 6 for s in short)  # character 5-grams
    assert shingles("") == set() and shingle_hashes("").size == 0


def test_minhash_finds_near_duplicates_and_not_merely_related_texts() -> None:
    texts = [maria(0), "A train leaves the station at noon and travels sixty miles per hour for three hours; "
             "how far does it go", maria(1), "Maria has twelve green pears and sells five of them at the market "
             "after school; how many pears are left today"]
    pairs = near_duplicate_pairs(texts)
    assert [(i, m.key) for i, m in pairs] == [(2, "0")]
    assert pairs[0][1].similarity == pytest.approx(20 / 22) and pairs[0][1].measure == "jaccard"
    assert near_duplicate_rate(texts) == 0.25
    assert near_duplicate_rate(texts, threshold=0.95) == 0.0
    assert near_duplicate_rate([]) == 0.0


def test_the_issue_example_shares_eleven_of_sixteen_shingles() -> None:
    first = "If you have 5 apples, how many more do you need to have 10 apples?"
    second = "If you have 5 apples, how many more do you need to get 10?"
    assert near_duplicate_pairs([first, second], threshold=0.8) == []
    (pair,) = near_duplicate_pairs([first, second], threshold=0.6)
    assert pair[0] == 1 and pair[1].similarity == pytest.approx(11 / 16)


def test_rensa_backend_flags_the_same_pairs() -> None:
    pytest.importorskip("rensa")
    texts = [maria(i) for i in range(4)] + [f"{MARIA} {word} and pears" for word in ENDINGS[:3]] + [
        "A train leaves the station at noon and travels sixty miles per hour for three hours"]
    by = {backend: [(i, m.key, round(m.similarity, 6)) for i, m in near_duplicate_pairs(texts, backend=backend)]
          for backend in ("datasketch", "rensa")}
    assert by["datasketch"] == by["rensa"] and len(by["rensa"]) == 6


def test_embedding_check_catches_what_shingles_miss() -> None:
    def embed(texts: Any) -> Any:
        import numpy as np

        return np.array([[1.0, 0.0] if "apples" in t else [0.0, 1.0] for t in texts], dtype=np.float32)

    index = NearDupIndex(0.8, embed=embed, embedding_threshold=0.95)
    index.add("a", "If you have 5 apples, how many more do you need to have 10 apples?")
    found = index.match("Tom owns 5 apples; how many more to reach 10?")
    assert found is not None and (found.key, found.measure) == ("a", "cosine")
    assert index.match("A train leaves the station at noon and travels sixty miles") is None


# -- the run's accept path ----------------------------------------------------------------------------


def test_near_duplicate_across_leaves_is_rejected_and_replaced(tmp_path: Path, fake_config: Any) -> None:
    result = TreeSynth(fake_config(), lms=scripted_lms(ScriptedEngine(with_maria))).run("word problems",
                                                                                        tmp_path / "r")
    counts = result.summary["counts"]
    assert result.status == "complete" and counts["samples"] == counts["target"] == 40  # topped up: exact
    kept = marias(tmp_path / "r")
    assert len(kept) == 1, "one Maria problem survives; every other leaf's near-duplicate is replaced"
    rejected = [r for r in read_jsonl(tmp_path / "r" / "rejected.jsonl") if r["reason"] == "near-duplicate"]
    assert counts["near_duplicates"] == len(rejected) == counts["rejected_by_reason"]["near-duplicate"]
    assert {r["duplicate_of"] for r in rejected} == {kept[0]["id"]}
    assert {r["leaf_id"] for r in rejected} - {kept[0]["leaf_id"]}, "caught across leaves"
    assert all(r["text"].startswith("Maria has twelve") and r["similarity"] >= 0.8 for r in rejected)
    assert all(r["stage"] == "leaf" and r["measure"] == "jaccard" for r in rejected)


def test_embedding_check_in_a_run(tmp_path: Path, fake_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from treesynth.metrics import embedders

    class Fake:  # MiniLM's stand-in: every Maria problem is one point, any other text a random one of its own
        def embed(self, texts: Any) -> Any:
            rows = [np.random.default_rng(0 if "Maria" in t else zlib.crc32(t.encode())).standard_normal(64)
                    for t in texts]
            return np.array([row / np.linalg.norm(row) for row in rows], dtype=np.float32)

    monkeypatch.setattr(embedders, "minilm_embedder", Fake)
    cfg = fake_config(**{"synthesis.near_dup": 0.0, "synthesis.near_dup_embedding": 0.95})
    result = TreeSynth(cfg, lms=scripted_lms(ScriptedEngine(with_maria))).run("word problems", tmp_path / "r")
    assert result.status == "complete" and len(marias(tmp_path / "r")) == 1
    rejected = [r for r in read_jsonl(tmp_path / "r" / "rejected.jsonl") if r["reason"] == "near-duplicate"]
    assert rejected and {r["measure"] for r in rejected} == {"cosine"}


def test_near_dup_off_keeps_them(tmp_path: Path, fake_config: Any) -> None:
    cfg = fake_config(**{"synthesis.near_dup": 0.0})
    result = TreeSynth(cfg, lms=scripted_lms(ScriptedEngine(with_maria))).run("word problems", tmp_path / "r")
    assert result.summary["counts"]["near_duplicates"] == 0
    assert len(marias(tmp_path / "r")) > 1


def test_resumed_run_rebuilds_the_index_from_the_store(tmp_path: Path, fake_config: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    batches = 0

    def fails_after_eight_batches(prompt: str, schema: dict[str, Any] | None, seed: int | None) -> str:
        nonlocal batches
        if "batch" in json.dumps(schema or {}):
            batches += 1
            if batches > 8:
                raise ConnectionError("provider unreachable")
        return with_maria(prompt, schema, seed)

    out = tmp_path / "r"
    cfg = fake_config(**{"model.attempts": 1, "model.failure_limit": 1})
    first = TreeSynth(cfg, lms=scripted_lms(ScriptedEngine(fails_after_eight_batches))).run("word problems", out)
    assert first.status != "complete" and 0 < first.summary["counts"]["samples"] < 40 and len(marias(out)) == 1
    gc.collect()  # every failed call's error was retrieved: none is logged when its task is collected
    assert "exception was never retrieved" not in caplog.text
    second = TreeSynth(cfg, lms=scripted_lms(ScriptedEngine(with_maria))).run("word problems", out)
    assert second.status == "complete" and second.summary["counts"]["samples"] == 40
    assert len(marias(out)) == 1, "the second session checked its candidates against the first one's samples"
    assert second.summary["counts"]["near_duplicates"] > first.summary["counts"]["near_duplicates"]


def test_store_screen_rejects_into_the_ledger(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "r", {"task": "t"})
    try:
        screen = NearDupScreen(NearDupIndex(0.8), stage="persona")
        rows = [(normalize(text), {"id": f"s{i}", "leaf_id": "n1", "path": [], "text": text}, None)
                for i, text in enumerate([maria(0), maria(1), maria(0).upper(), "A completely different problem "
                                          "about trains leaving the station at noon"])]
        store.save_leaf_call("n1", 0, rows)
        assert store.accept("n1", 10, screen) == 2
        assert store.candidate_stats() == {"accepted": 2, "rejected": 1, "duplicate": 1}
        (line,) = store.rejected()
        assert line["reason"] == "near-duplicate" and line["duplicate_of"] == "s0" and line["stage"] == "persona"
        reopened = NearDupScreen(NearDupIndex(0.8)).admit_all(store.samples_in_order())
        assert reopened.check({"id": "x", "text": maria(5)}) is not None
    finally:
        store.close()


# -- options and eval ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("off", 0.0), ("0", 0.0), ("0.7", 0.7), ("1", 1.0), (None, None)])
def test_near_dup_flag_values(value: str | None, expected: float | None) -> None:
    assert near_dup_threshold(value) == expected


def test_near_dup_flag_reaches_the_config_and_bad_values_are_usage_errors(tmp_path: Path) -> None:
    assert RunOptions(model="test/fake", near_dup="off").to_config().synthesis.near_dup == 0.0
    assert RunOptions(model="test/fake").to_config().synthesis.near_dup == 0.8
    with pytest.raises(ConfigError, match="--near-dup expects"):
        near_dup_threshold("high")
    code, _, err = invoke("run", "poems", "--model", "test/fake", "--near-dup", "1.5", "--out", str(tmp_path / "r"))
    assert code == 2 and err.strip().startswith("error: --near-dup expects") and not (tmp_path / "r").exists()


def test_eval_reports_the_minhash_near_duplicate_rate(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    texts = [maria(0), maria(1), "A train leaves the station at noon and travels sixty miles per hour",
             "Tom buys four notebooks for three dollars each and pays with a twenty dollar bill"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code, _, err = invoke("eval", str(data), "--embedder", "lexical", "--no-plots", "--out", str(tmp_path / "e"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    lexical = metrics["datasets"][0]["lexical"]
    assert lexical["minhash_near_duplicate_rate"] == 0.25 and lexical["minhash_threshold"] == 0.8
    assert "Near-duplicate rate (MinHash)" in (tmp_path / "e" / "report.md").read_text()
    code, _, _ = invoke("eval", str(data), "--embedder", "lexical", "--no-plots", "--near-dup", "0.95",
                        "--out", str(tmp_path / "e2"))
    assert json.loads((tmp_path / "e2" / "metrics.json").read_text())["datasets"][0]["lexical"][
        "minhash_near_duplicate_rate"] == 0.0
