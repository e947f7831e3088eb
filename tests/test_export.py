"""``treesynth export``: every format loads back with ``datasets``; the card's front matter and tree; the Hub path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import read_jsonl
from test_cli_errors import assert_usage_error
from test_run_e2e import treesynth

from treesynth.balance import Balancer, BalanceTarget
from treesynth.baselines import Baseline
from treesynth.config import RunConfig
from treesynth.export import CardMeta, ExportOptions, export_run
from treesynth.export.formats import FORMATS, default_map, layout, parse_map, to_parts
from treesynth.models import FirstSplit, Task, stable_seed
from treesynth.pipeline import TreeSynth

datasets = pytest.importorskip("datasets")

QA = Task(description="grade-school math word problems", fields={"question": "the problem", "answer": "the answer"},
          first_split=FirstSplit(criterion="difficulty", values=["easy", "hard"]))
TEXT = "short product reviews"


def config(n: int, **extra: Any) -> RunConfig:
    return RunConfig().with_overrides({"model.model": "test/fake", "tree.depth": 2, "tree.width": 3,
                                       "synthesis.samples": n, "synthesis.samples_per_call": 4, "seed": 7, **extra})


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qa") / "run"
    assert TreeSynth(config(20)).run(QA, out).status == "complete"
    return out


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("text") / "run"
    assert TreeSynth(config(12)).run(TEXT, out).status == "complete"
    return out


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    data = yaml.safe_load(card.split("---\n")[1])
    assert isinstance(data, dict)
    return data


def test_every_format_loads_back_from_disk_parquet_and_jsonl(qa_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = export_run(qa_run, out, ExportOptions(), {})
    names = [c.name for c in result.configs]
    assert names == [*FORMATS, "messages-clean"] and result.default == "messages-clean"
    samples = read_jsonl(qa_run / "samples.jsonl")
    for name in names:
        from_disk = datasets.load_from_disk(str(out / "hf" / name))["train"]
        parquet = datasets.load_dataset("parquet", data_files=str(out / "data" / name / "*.parquet"), split="train")
        lines = read_jsonl(out / "jsonl" / f"{name}.jsonl")
        assert len(from_disk) == len(parquet) == len(lines) == len(samples) == 20
        assert from_disk.to_list() == parquet.to_list() == lines
    raw = datasets.load_from_disk(str(out / "hf" / "raw"))["train"]
    assert raw[0]["question"] == samples[0]["fields"]["question"] and "fields" not in raw.column_names
    assert raw[0]["treesynth_leaf_id"] == samples[0]["leaf_id"]
    assert raw[0]["treesynth_path"].startswith("difficulty: ")
    messages = datasets.load_from_disk(str(out / "hf" / "messages"))["train"][0]["messages"]
    assert messages == [{"role": "user", "content": samples[0]["fields"]["question"]},
                        {"role": "assistant", "content": samples[0]["fields"]["answer"]}]
    sharegpt = read_jsonl(out / "jsonl" / "sharegpt.jsonl")[0]["conversations"]
    assert [turn["from"] for turn in sharegpt] == ["human", "gpt"]
    alpaca = read_jsonl(out / "jsonl" / "alpaca.jsonl")[0]
    assert (alpaca["instruction"], alpaca["input"], alpaca["output"]) == (
        samples[0]["fields"]["question"], "", samples[0]["fields"]["answer"])
    pc = read_jsonl(out / "jsonl" / "prompt-completion.jsonl")[0]
    assert (pc["prompt"], pc["completion"]) == (samples[0]["fields"]["question"], samples[0]["fields"]["answer"])
    clean = datasets.load_from_disk(str(out / "hf" / "messages-clean"))["train"]
    assert clean.column_names == ["messages"]


def test_provenance_names_the_call_and_its_seed(qa_run: Path, tmp_path: Path) -> None:
    export_run(qa_run, tmp_path / "e", ExportOptions(formats=("raw",), clean="raw", embedder=None), {})
    rows = read_jsonl(tmp_path / "e" / "jsonl" / "raw.jsonl")
    assert all(row["treesynth_model"] == "test/fake" and row["treesynth_origin"] == "treesynth" for row in rows)
    for row in rows:
        leaf, _, call = row["treesynth_call_id"].partition("/")
        assert leaf == row["treesynth_leaf_id"] and row["treesynth_seed"] == stable_seed(7, leaf, int(call))
    clean = read_jsonl(tmp_path / "e" / "jsonl" / "raw-clean.jsonl")
    assert set(clean[0]) == {"question", "answer"}


def test_card_front_matter_names_the_configs_and_the_card_embeds_the_tree(qa_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    meta = CardMeta(task_categories=("text-generation", "question-answering"))
    export_run(qa_run, out, ExportOptions(formats=("alpaca", "raw"), card=meta), {})
    card = (out / "README.md").read_text()
    front = front_matter(card)
    assert [c["config_name"] for c in front["configs"]] == ["raw", "alpaca", "raw-clean"]
    assert front["configs"][2]["default"] is True and "default" not in front["configs"][0]
    assert front["configs"][1]["data_files"] == [{"split": "train", "path": "data/alpaca/train-*"}]
    assert not (out / "data" / "messages").exists()
    assert front["size_categories"] == ["n<1K"] and "treesynth" in front["tags"]
    assert front["license"] == "other" and front["task_categories"] == ["text-generation", "question-answering"]
    tree = json.loads((qa_run / "tree.json").read_text())
    counts: dict[str, int] = {}
    for sample in read_jsonl(qa_run / "samples.jsonl"):
        counts[sample["leaf_id"]] = counts.get(sample["leaf_id"], 0) + 1
    assert "```mermaid\ngraph TD" in card
    leaf = next(iter(counts))
    assert f'n{leaf}["' in card and f"[{counts[leaf]}/" in card.split(f'n{leaf}["')[1].split("\n")[0]
    assert tree["root"]["criterion"] in card
    assert "embedder **lexical" in card and "Vendi score" in card
    assert "| exact or normalized duplicates removed |" in card and "| stage | model |" in card
    assert "treesynth run treesynth_task.yaml --config treesynth_config.yaml --out run" in card
    assert yaml.safe_load((out / "treesynth_task.yaml").read_text())["fields"] == QA.fields
    assert RunConfig.load(out / "treesynth_config.yaml").seed == 7
    # the folder loads as a Hub-style dataset through the card's configs
    loaded = datasets.load_dataset(str(out), "alpaca", split="train")
    assert len(loaded) == 20


def test_text_samples_default_to_the_task_as_instruction(text_run: Path, tmp_path: Path) -> None:
    export_run(text_run, tmp_path / "e", ExportOptions(formats=("alpaca", "raw"), clean="alpaca"), {})
    text = read_jsonl(text_run / "samples.jsonl")[0]["text"]
    alpaca = read_jsonl(tmp_path / "e" / "jsonl" / "alpaca.jsonl")[0]
    assert (alpaca["instruction"], alpaca["output"]) == (TEXT, text)
    assert read_jsonl(tmp_path / "e" / "jsonl" / "raw.jsonl")[0]["text"] == text
    card = (tmp_path / "e" / "README.md").read_text()
    assert "treesynth run 'short product reviews' --config treesynth_config.yaml" in card


def test_field_map() -> None:
    fields = ["question", "answer"]
    assert parse_map("answer=instruction,question=output", fields, fields) == {"answer": "instruction",
                                                                              "question": "output"}
    assert default_map(["a", "b", "c"]) == {"a": "instruction", "b": "input", "c": "output"}
    parts = to_parts({"q": "Q?", "ctx": "C", "a": "A", "s": "S"}, {"s": "system", "q": "instruction", "ctx": "input",
                                                               "a": "output"}, "task")
    assert layout("messages", parts)["messages"][0] == {"role": "system", "content": "S"}
    assert layout("messages", parts)["messages"][1]["content"] == "Q?\n\nC"
    assert layout("sharegpt", parts)["system"] == "S"


def test_balance_originals_keep_their_columns(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    with data.open("w") as handle:
        for i in range(30):
            handle.write(json.dumps({"question": f"easy question {i}?", "answer": str(i), "uid": i}) + "\n")
    task = Task(description="math", first_split=FirstSplit(criterion="difficulty", values=["easy", "hard"]))
    Balancer(config(12, **{"tree.depth": 1})).balance(data, task, tmp_path / "bal", BalanceTarget(per_leaf=6),
                                                      text_field="{question} {answer}")
    export_run(tmp_path / "bal", tmp_path / "e", ExportOptions(formats=("raw", "alpaca")), {})
    raw = datasets.load_from_disk(str(tmp_path / "e" / "hf" / "raw"))["train"].to_list()
    originals = [r for r in raw if r["treesynth_origin"] == "original"]
    synthesized = [r for r in raw if r["treesynth_origin"] == "synthesized"]
    assert len(originals) == 6 and len(synthesized) == 6
    assert all(isinstance(r["uid"], int) and r["treesynth_model"] is None for r in originals)
    assert all(r["treesynth_call_id"] and r["treesynth_model"] == "test/fake" for r in synthesized)
    alpaca = read_jsonl(tmp_path / "e" / "jsonl" / "alpaca.jsonl")
    assert (alpaca[0]["instruction"], alpaca[0]["output"]) == (raw[0]["question"], raw[0]["answer"])
    card = (tmp_path / "e" / "README.md").read_text()
    assert "treesynth balance" in card and "--total 12" in card and "```mermaid" in card
    assert "| input records downsampled |" in card


def test_bench_cells_export(tmp_path: Path) -> None:
    Baseline("temperature", config(8)).run(TEXT, tmp_path / "cells" / "temperature")
    TreeSynth(config(8)).run(TEXT, tmp_path / "cells" / "treesynth")
    for cell in ("temperature", "treesynth"):
        export_run(tmp_path / "cells" / cell, tmp_path / f"e-{cell}", ExportOptions(formats=("messages",)), {})
        rows = datasets.load_from_disk(str(tmp_path / f"e-{cell}" / "hf" / "messages"))["train"]
        assert len(rows) == 8
    assert read_jsonl(tmp_path / "e-temperature" / "jsonl" / "messages.jsonl")[0]["treesynth_origin"] == "temperature"
    sweep = yaml.safe_load((tmp_path / "e-temperature" / "treesynth_sweep.yaml").read_text())
    assert sweep["methods"] == ["temperature"] and sweep["sizes"] == [8] and sweep["seeds"] == [7]
    assert "treesynth bench treesynth_sweep.yaml" in (tmp_path / "e-temperature" / "README.md").read_text()


def test_push_uploads_privately_and_never_writes_the_token(qa_run: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[tuple[str, dict[str, Any]]] = []

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            calls.append(("init", {"token": token}))

        def create_repo(self, repo_id: str, **kwargs: Any) -> None:
            calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

        def upload_folder(self, **kwargs: Any) -> None:
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    token = "hf_secret_token_123"
    result = export_run(qa_run, tmp_path / "e", ExportOptions(formats=("raw",), push="me/gsm"), {"HF_TOKEN": token})
    assert result.url == "https://huggingface.co/datasets/me/gsm"
    assert calls[0] == ("init", {"token": token})
    assert calls[1][1]["private"] is True and calls[1][1]["repo_type"] == "dataset"
    assert calls[2][1]["folder_path"] == str(tmp_path / "e") and calls[2][1]["ignore_patterns"] == ["hf/**"]
    for file in (tmp_path / "e").rglob("*"):
        assert not file.is_file() or token.encode() not in file.read_bytes(), file
    assert 'load_dataset("me/gsm", "raw-clean"' in (tmp_path / "e" / "README.md").read_text()


def test_push_without_a_token_is_a_usage_error_before_any_write(qa_run: Path, tmp_path: Path) -> None:
    done = treesynth("export", str(qa_run), "--out", str(tmp_path / "e"), "--push", "me/gsm",
                     env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert_usage_error(done, "HF_TOKEN")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--format", "chatml"], "unknown --format 'chatml'"),
    (["--map", "question"], "not FIELD=TARGET"),
    (["--map", "prompt=instruction,answer=output"], "field 'prompt'"),
    (["--map", "question=user,answer=output"], "target 'user'"),
    (["--map", "question=instruction"], "no field to output"),
    (["--clean", "chatml"], "unknown --clean format 'chatml'"),
])
def test_bad_options_are_one_line_usage_errors(qa_run: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    done = treesynth("export", str(qa_run), "--out", str(tmp_path / "e"), *args)
    assert_usage_error(done, needle)
    assert not (tmp_path / "e").exists()


def test_bad_inputs_are_one_line_usage_errors(qa_run: Path, tmp_path: Path) -> None:
    assert_usage_error(treesynth("export", str(tmp_path), "--out", str(tmp_path / "e")), "no run.json")
    sweep = tmp_path / "sweep"
    (sweep / "cells").mkdir(parents=True)
    assert_usage_error(treesynth("export", str(sweep), "--out", str(tmp_path / "e")), "export one cell")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert_usage_error(treesynth("export", str(qa_run), "--out", str(busy)), "--force")
    assert (busy / "mine.txt").read_text() == "keep me"


def test_cli_writes_the_export(text_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    done = treesynth("export", str(copy), "--out", str(tmp_path / "e"), "--format", "messages")
    assert done.returncode == 0, done.stderr
    assert "exported 12 samples in 2 configs (messages, messages-clean)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "e" / "data").iterdir()) == ["messages", "messages-clean"]


def test_card_reads_near_duplicate_counts_and_pairs_when_present(qa_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(qa_run, run)
    record = json.loads((run / "run.json").read_text())
    record["counts"]["near_duplicates"] = 1
    record["counts"]["rejected_by_reason"] = {"near-duplicate": 1}
    (run / "run.json").write_text(json.dumps(record))
    kept = read_jsonl(run / "samples.jsonl")[0]
    (run / "rejected.jsonl").write_text(json.dumps({
        "stage": "leaf", "leaf_id": kept["leaf_id"], "reason": "near-duplicate", "duplicate_of": kept["id"],
        "fields": {"question": "How many apples to get 10?", "answer": "5"}}) + "\n")
    export_run(run, tmp_path / "e", ExportOptions(formats=("raw",), embedder=None), {})
    card = (tmp_path / "e" / "README.md").read_text()
    assert "| near-duplicates removed | 1 |" in card and "| near-duplicate | 1 |" in card
    line = next(line for line in card.splitlines() if "How many apples to get 10?" in line)
    assert kept["fields"]["question"] in line


def test_columns_that_mix_types_become_text_and_missing_values_null(tmp_path: Path) -> None:
    from treesynth.export.hub import uniform, write_config

    rows = [{"uid": 1, "meta": {"k": 1}}, {"uid": "x-2", "meta": {"j": "a"}, "extra": [1, "two"]}]
    assert uniform(rows) == [{"uid": "1", "meta": {"k": 1}, "extra": None},
                             {"uid": "x-2", "meta": {"j": "a"}, "extra": [1, "two"]}]
    written = write_config(tmp_path, "raw", rows)
    back = datasets.load_from_disk(str(tmp_path / "hf" / "raw"))["train"].to_list()
    assert written.rows == 2 and back[0]["uid"] == "1" and back[1]["extra"] == '[1, "two"]'


def test_force_replaces_an_earlier_export_and_keeps_other_files(qa_run: Path, text_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    export_run(qa_run, out, ExportOptions(formats=("alpaca",), embedder=None), {})
    (out / "notes.txt").write_text("mine")
    export_run(text_run, out, ExportOptions(formats=("raw",), embedder=None, force=True), {})
    assert sorted(p.name for p in (out / "data").iterdir()) == ["raw", "raw-clean"]
    assert not (out / "treesynth_task.yaml").exists() and (out / "notes.txt").read_text() == "mine"


def test_the_card_names_the_embedder_asked_for(qa_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from treesynth.metrics import embedders

    asked: list[str] = []
    real = embedders.make_embedder

    def spy(spec: str, **kwargs: Any) -> Any:
        asked.append(spec)
        return real("lexical", **kwargs)

    monkeypatch.setattr(embedders, "make_embedder", spy)
    export_run(qa_run, tmp_path / "e", ExportOptions(formats=("raw",), embedder="minilm"), {})
    assert asked == ["minilm"] and "embedder **lexical" in (tmp_path / "e" / "README.md").read_text()
    export_run(qa_run, tmp_path / "f", ExportOptions(formats=("raw",), embedder=None), {})
    assert asked == ["minilm"] and "## Diversity\n\nNot computed." in (tmp_path / "f" / "README.md").read_text()


def test_balance_of_sample_shaped_records_flattens_their_fields(tmp_path: Path) -> None:
    data = tmp_path / "nested.jsonl"
    with data.open("w") as handle:
        for i in range(20):
            handle.write(json.dumps({"id": i, "fields": {"question": f"easy question {i}?", "answer": str(i)}}) + "\n")
    task = QA.model_copy(update={"description": "math"})
    for name, field in (("template", "{question} {answer}"), ("default", None)):
        Balancer(config(12, **{"tree.depth": 1})).balance(data, task, tmp_path / name, BalanceTarget(per_leaf=4),
                                                          text_field=field)
        export_run(tmp_path / name, tmp_path / f"e-{name}", ExportOptions(formats=("raw", "alpaca")), {})
        raw = read_jsonl(tmp_path / f"e-{name}" / "jsonl" / "raw.jsonl")
        assert all("fields" not in r for r in raw)
        originals = [r for r in raw if r["treesynth_origin"] == "original"]
        assert len(originals) == 4 and all({"id", "question", "answer"} <= set(r) for r in originals)
    alpaca = read_jsonl(tmp_path / "e-template" / "jsonl" / "alpaca.jsonl")
    raw = read_jsonl(tmp_path / "e-template" / "jsonl" / "raw.jsonl")
    assert [(a["instruction"], a["output"]) for a in alpaca] == [(r["question"], r["answer"]) for r in raw]
    card = (tmp_path / "e-template" / "README.md").read_text()
    assert "on the text field `question + answer`" in card and "--field '{question} {answer}'" in card
    card = (tmp_path / "e-default" / "README.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("treesynth balance"))
    assert "--field" not in command and "--total 8" in command  # eval's description of its default is no field
