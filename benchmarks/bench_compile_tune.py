"""One compile and one tune, timed, on the embedded model (or any --model): the numbers in RESULTS.md.

Compile: grows small trees (depth 1 under each task's predefined first split) on the six tasks of
``treesynth.testing.tasks``, compiles the
chosen modules with the chosen optimizer at a tiny budget, and reports each module's held-out node score
before and after. Tune: an Optuna study of --trials trials over a small space on the first task.

    python benchmarks/bench_compile_tune.py [--model local/qwen2.5-coder-1.5b-instruct] [--optimizer gepa] [--budget 8]
        [--demos 0] [--draws 2] [--module coverage --module leaf] [--trials 10]
        [--out benchmarks/results/compile_tune]

On the 270M embedded base model, ``--optimizer bootstrap --demos 2 --draws 3`` is the setting that
improves a module (GEPA and MIPROv2 reflect with the same tiny model and propose nothing better).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

def run_compile(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from treesynth.config import RunConfig
    from treesynth.optimizers import CompileOptions, compile_program, save_program
    from treesynth.providers import make_lm
    from treesynth.testing.tasks import split_tasks

    config = RunConfig.defaults_for(args.model).with_overrides({"tree.depth": 1, "tree.width": 6,
                                         "synthesis.samples": args.samples, "synthesis.samples_per_call": 2})
    reflection = make_lm(args.reflection_model or args.model, temperature=1.0, max_tokens=args.reflection_tokens)
    options = CompileOptions(optimizer=args.optimizer, modules=tuple(args.module), budget=args.budget,
                             demos=args.demos, draws=args.draws, threads=1)
    started = time.perf_counter()
    result = compile_program(split_tasks(), config, out / "compile-trees", options, reflection_lm=reflection)
    seconds = time.perf_counter() - started
    save_program(result.program, out / "program.json", compiled=result.report.as_dict())
    report = result.report.as_dict()
    report["wall_seconds"] = round(seconds, 1)
    return report


def run_tune(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from treesynth.config import RunConfig
    from treesynth.optimizers.search_space import SearchSpace
    from treesynth.optimizers.tune import TuneOptions, tune
    from treesynth.testing.tasks import split_tasks

    base = RunConfig.defaults_for(args.model).with_overrides({"synthesis.samples": 6, "tree.depth": 1, "tree.width": 6,
                                                   "tree.pivots": 3, "synthesis.samples_per_call": 2})
    space = SearchSpace.from_mapping({"depth": [1, 2], "width": [2, 6], "pivots": [2, 4], "samples_per_call": [1, 3]})
    options = TuneOptions(trials=args.trials, budget=args.tune_budget, startup_trials=4, space=space,
                          storage=f"sqlite:///{(out / 'study.db').resolve()}")
    started = time.perf_counter()
    result = tune(split_tasks()[0], base, out / "tune", options)
    seconds = time.perf_counter() - started
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    trials = [{"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
               "calls": t.user_attrs.get("calls"), "status": t.user_attrs.get("status")} for t in study.trials]
    return {"study": result.study_name, "storage": result.storage, "metric_names": result.metric_names,
            "finished": result.finished, "wall_seconds": round(seconds, 1), "front": result.front,
            "chosen": result.chosen, "trials": trials, "calls": sum(t["calls"] or 0 for t in trials),
            "files": result.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--reflection-model", default=None, help="default: --model")
    parser.add_argument("--reflection-tokens", type=int, default=512)
    parser.add_argument("--optimizer", default="gepa", choices=["gepa", "mipro", "bootstrap"])
    parser.add_argument("--module", action="append", default=None)
    parser.add_argument("--budget", type=int, default=8, help="GEPA metric calls (MIPROv2 trials) per module")
    parser.add_argument("--demos", type=int, default=0, help="few-shot demos per predictor (bootstrap needs >= 1)")
    parser.add_argument("--draws", type=int, default=2, help="examples (seeds) per node")
    parser.add_argument("--samples", type=int, default=6, help="samples per task when growing the example trees")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--tune-budget", type=int, default=60, help="LLM calls per tune trial")
    parser.add_argument("--skip", choices=["compile", "tune"], default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compile_tune"))
    args = parser.parse_args()
    args.module = args.module or ["coverage", "leaf"]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("treesynth").setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model": args.model, "optimizer": args.optimizer, "budget": args.budget,
                               "demos": args.demos, "draws": args.draws, "cpu_count": os.cpu_count()}
    if args.skip != "compile":
        results["compile"] = run_compile(args, args.out)
    if args.skip != "tune":
        results["tune"] = run_tune(args, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: v for k, v in results.items() if k != "tune"}, indent=2, default=str))
    if "tune" in results:
        tuned = results["tune"]
        print(json.dumps({k: tuned[k] for k in ("finished", "wall_seconds", "calls", "chosen", "front")}, indent=2,
                         default=str))


if __name__ == "__main__":
    main()
