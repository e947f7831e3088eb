"""``treesynth compile TASKS...``: compile the program's instructions against per-node diversity objectives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from treesynth.cli._common import cli_command
from treesynth.cli.guard import Yes, confirm_spend, planned_spend
from treesynth.cli.options import RunOptions
from treesynth.wording import plural

if TYPE_CHECKING:
    from treesynth.optimizers.compile import CompileOptions, CompileReport

OptimizerOpt = Annotated[str, typer.Option("--optimizer", help="gepa (reflective instruction evolution) | mipro "
                                           "(MIPROv2) | bootstrap (few-shot demos; needs --demos).")]
ModulesOpt = Annotated[list[str] | None, typer.Option("--module", help="Module to compile (criterion, coverage, "
                                                      "leaf); repeatable. Default: all three.")]


def register(app: typer.Typer) -> None:
    """Add the ``compile`` command to ``app``."""
    app.command("compile", no_args_is_help=True)(compile_command)


@dataclass(frozen=True)
class OptimizerOptions:
    """Which optimizer compiles which modules, and how hard it tries."""

    optimizer: OptimizerOpt = "gepa"
    module: ModulesOpt = None
    budget: Annotated[int | None, typer.Option(help="GEPA: metric calls per module; MIPROv2: trials per module. "
                                               "Default: small, scaled to the node count.")] = None
    demos: Annotated[int, typer.Option(help="Few-shot demos per predictor (0 = instructions only: demos in "
                                       "generation prompts anchor outputs).")] = 0
    draws: Annotated[int, typer.Option(help="Examples (seeds) per node.")] = 1
    threads: Annotated[int, typer.Option(help="Optimizer threads and concurrent measuring calls.")] = 2
    embedder: Annotated[str, typer.Option(help="Embedder of the objectives: lexical (numpy only) | minilm | "
                                          "st:<model> | litellm:<model>.")] = "lexical"

    def to_compile_options(self, seed: int) -> CompileOptions:
        """The optimizer's :class:`CompileOptions` (which validates the names) for a run seeded ``seed``."""
        from treesynth.optimizers.compile import CompileOptions

        modules = tuple(self.module) if self.module else CompileOptions().modules
        return CompileOptions(optimizer=self.optimizer,  # type: ignore[arg-type]  # validated by CompileOptions
                              modules=modules,  # type: ignore[arg-type]
                              budget=self.budget, demos=self.demos, draws=self.draws, threads=self.threads,
                              seed=seed, embedder=self.embedder)


@cli_command(omit=("near_dup", "executor", "ray_address", "workers"))  # compiling synthesizes no dataset
def compile_command(
    tasks: Annotated[list[str], typer.Argument(help="Tasks (sentences or YAML task files) to grow example trees on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the compiled program (JSON).")],
    compiler: OptimizerOptions,
    reflection_model: Annotated[str | None, typer.Option(help="Model that proposes instructions. Default: the "
                                                         "leaf role's model.")] = None,
    work: Annotated[Path | None, typer.Option(help="Directory for the grown example trees (resumable). Default: "
                                              "<out without .json>-trees.")] = None,
    *,
    options: RunOptions,
    yes: Yes = False,
) -> None:
    """Grow small trees on TASKS, compile the program against diversity objectives, save it as JSON.

    The tree options shape the example trees (keep them small); the held-out node score of each module is
    printed before and after. Use the result with `treesynth run --program OUT`.
    """
    from treesynth.models import Task
    from treesynth.optimizers.compile import compile_program
    from treesynth.optimizers.program_io import save_program
    from treesynth.providers import make_lm

    parsed = [Task.from_arg(t) for t in tasks]
    cfg = options.to_config()
    trees = len(parsed)  # the example trees (the measuring calls come on top)
    confirm_spend(cfg, planned_spend(cfg, runs=trees), yes=yes, runs=trees)
    compile_options = compiler.to_compile_options(cfg.seed)
    reflection = None
    if reflection_model:
        reflection = make_lm(reflection_model, temperature=1.0, max_tokens=max(2048, cfg.model.max_tokens),
                             api_base=cfg.model.api_base)
    result = compile_program(parsed, cfg, work or out.with_name(out.stem + "-trees"),
                             compile_options, reflection_lm=reflection)
    save_program(result.program, out, compiled=result.report.as_dict())
    _print_report(result.report, out)


def _print_report(report: CompileReport, out: Path) -> None:
    grow = report.grow
    typer.echo(f"grew {plural(grow['trees'], 'tree')}: {plural(grow['nodes'], 'node')}, "
               f"{plural(grow['leaves'], 'leaf')}, {plural(grow['samples'], 'sample')}, "
               f"{plural(grow['calls'], 'call')}")
    typer.echo(f"{'module':<10} {'train/val/test':>15} {'before':>8} {'after':>8} {'delta':>8}  result")
    for name, m in report.modules.items():
        if m.skipped:
            typer.echo(f"{name:<10} {f'{m.train}/{m.val}/{m.test}':>15} {'':>8} {'':>8} {'':>8}  skipped: {m.skipped}")
            continue
        verdict = f"compiled ({', '.join(m.changed) or 'demos'})" if m.kept else "kept the original (no val gain)"
        typer.echo(f"{name:<10} {f'{m.train}/{m.val}/{m.test}':>15} {m.before:>8.3f} {m.after:>8.3f} "
                   f"{m.delta:>+8.3f}  {verdict}")
    typer.echo(f"{report.optimizer}: {report.calls} LLM calls in {report.seconds:.1f}s; held-out node scores "
               f"improved for: {', '.join(report.improved()) or 'none'} -> {out}")
