"""The tune report: the Pareto front as a table, a picture (front and parameter importances), the choice.

The chosen configuration is the front's *knee*: after scaling both objectives to [0, 1] over the front,
the trial closest to the ideal point (highest diversity, lowest cost). Pictures are drawn on a
``matplotlib.figure.Figure`` (no pyplot state); without matplotlib the PNG is skipped with a warning.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treesynth.config import RunConfig
from treesynth.optimizers.search_space import NO_PROGRAM, SearchSpace
from treesynth.store import write_atomic

if TYPE_CHECKING:
    import optuna

    from treesynth.optimizers.tune import TuneResult

logger = logging.getLogger(__name__)

_ATTRS = ("samples", "leaves", "nodes", "calls", "tokens", "status")


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per feasible Pareto-optimal trial, by ascending cost."""
    rows = []
    for trial in study.best_trials:
        row: dict[str, Any] = {"trial": trial.number, "diversity": trial.values[0], "cost": trial.values[1]}
        row.update(trial.params)
        row.update({key: trial.user_attrs.get(key) for key in _ATTRS})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["cost"], -r["diversity"]))


def knee(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row closest to (best diversity, lowest cost) once both are scaled to [0, 1] over ``rows``."""
    if not rows:
        return None
    div = [r["diversity"] for r in rows]
    cost = [r["cost"] for r in rows]

    def scaled(value: float, low: float, high: float) -> float:
        return 0.0 if high == low else (value - low) / (high - low)

    def distance(row: dict[str, Any]) -> float:
        return math.hypot(1.0 - scaled(row["diversity"], min(div), max(div)), scaled(row["cost"], min(cost), max(cost)))

    return min(rows, key=lambda r: (distance(r), r["cost"]))


def _markdown(rows: list[dict[str, Any]], result: TuneResult, chosen: dict[str, Any] | None) -> str:
    diversity, cost = result.metric_names
    columns = [c for c in rows[0] if c not in ("diversity", "cost")] if rows else []
    head = ["trial", diversity, cost, *[c for c in columns if c != "trial"]]
    lines = [f"# Pareto front of study `{result.study_name}`", "",
             f"Storage: `{result.storage}` ({result.finished} finished trials; open it with "
             f"`optuna-dashboard {result.storage}`). Objectives: maximize {diversity}, minimize {cost}.", ""]
    if not rows:
        return "\n".join([*lines, "No feasible complete trial yet.", ""])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        mark = " (chosen)" if chosen is not None and row["trial"] == chosen["trial"] else ""
        cells = [f"{row['trial']}{mark}", f"{row['diversity']:.4f}", f"{row['cost']:g}"]
        cells += [_cell(row.get(c)) for c in columns if c != "trial"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def importances(study: optuna.Study, names: list[str]) -> dict[str, dict[str, float]]:
    """Parameter importances per objective (fANOVA with scikit-learn, else PED-ANOVA); empty if not computable."""
    import optuna

    try:
        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        import sklearn  # noqa: F401 - fANOVA needs it
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    out: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        try:
            out[name] = dict(optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, i=index: t.values[i]))
        except (ValueError, RuntimeError) as exc:
            logger.info("no parameter importances for %s: %s", name, exc)
    return out


def plot(study: optuna.Study, rows: list[dict[str, Any]], names: list[str], chosen: dict[str, Any] | None,
         path: Path) -> bool:
    """Draw the front (left) and parameter importances (right) into ``path``; False without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed: %s not written (pip install 'treesynth[metrics]')", path)
        return False
    figure = Figure(figsize=(12, 4.8))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    done = [t for t in study.get_trials(deepcopy=False) if t.values is not None and len(t.values) == 2]
    left.scatter([t.values[1] for t in done], [t.values[0] for t in done], c="0.75", label="trials")
    left.plot([r["cost"] for r in rows], [r["diversity"] for r in rows], "o-", c="tab:blue", label="Pareto front")
    if chosen is not None:
        left.scatter([chosen["cost"]], [chosen["diversity"]], s=160, facecolors="none", edgecolors="tab:red",
                     label=f"chosen (trial {chosen['trial']})")
    left.set_xlabel(names[1] + " (lower is better)")
    left.set_ylabel(names[0] + " (higher is better)")
    left.set_title("Diversity vs cost")
    left.legend(loc="lower right")
    _importance_bars(right, importances(study, names))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def _importance_bars(axes: Any, found: dict[str, dict[str, float]]) -> None:
    axes.set_title("Parameter importances")
    if not found:
        axes.text(0.5, 0.5, "not enough complete trials", ha="center", va="center")
        axes.set_axis_off()
        return
    params = sorted({p for values in found.values() for p in values})
    height = 0.8 / len(found)
    for index, (name, values) in enumerate(found.items()):
        axes.barh([i + index * height for i in range(len(params))], [values.get(p, 0.0) for p in params],
                  height=height, label=name)
    axes.set_yticks([i + 0.4 - height / 2 for i in range(len(params))], params)
    axes.set_xlabel("importance")
    axes.legend(loc="lower right")


def chosen_config(base: RunConfig, chosen: dict[str, Any]) -> RunConfig:
    """``base`` with the chosen trial's parameters applied."""
    params = {key: value for key, value in chosen.items() if key in SearchSpace().ranges()}
    return base.with_overrides(SearchSpace.overrides(params))


def write_report(study: optuna.Study, base: RunConfig, out: Path, result: TuneResult) -> None:
    """Write ``front.md``, ``front.csv``, ``front.png`` and ``chosen.yaml`` under ``out``; fill ``result``."""
    rows = front_rows(study)
    chosen = knee(rows)
    result.front, result.chosen = rows, chosen
    write_atomic(out / "front.md", _markdown(rows, result, chosen))
    write_atomic(out / "front.csv", _csv(rows))
    result.files = {"table": str(out / "front.md"), "csv": str(out / "front.csv")}
    if plot(study, rows, result.metric_names, chosen, out / "front.png"):
        result.files["png"] = str(out / "front.png")
    if chosen is not None:
        program = chosen.get("program", NO_PROGRAM)
        use = f" --program {program}" if program != NO_PROGRAM else ""
        header = (f"# chosen by treesynth tune: trial {chosen['trial']} of study {result.study_name} "
                  f"({result.metric_names[0]} {chosen['diversity']:.4f}, {result.metric_names[1]} {chosen['cost']:g})\n"
                  f"# use: treesynth run TASK --config {out / 'chosen.yaml'}{use}\n")
        write_atomic(out / "chosen.yaml", header + chosen_config(base, chosen).dump_yaml())
        result.files["config"] = str(out / "chosen.yaml")
