"""A balance run's exports: ``balanced.jsonl``, ``routing.jsonl``, ``unrouted.jsonl``, ``rejected.jsonl``,
``tree.json``, ``run.json`` (a :class:`~treesynth.record.RunRecord` of kind ``balance``) and ``report.md``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treesynth.balance.dataset import InputDataset
from treesynth.balance.report import write_report
from treesynth.kernel import RunSession
from treesynth.metrics.structure import gini, normalized_entropy
from treesynth.models import Node, PathStep, Task, Tree
from treesynth.record import BalanceInput, Counts, Distribution, Distributions, RoutingStats
from treesynth.store import RunStore, write_atomic, write_jsonl_atomic
from treesynth.summary import is_infinite_split, rejection_counts

STATUSES = ("kept", "downsampled", "duplicate", "unrouted")


@dataclass
class BalanceResult:
    """Where the balanced dataset went and what happened to every input line."""

    out: Path
    tree: Tree
    summary: dict[str, Any]


@dataclass
class BalanceOutcome:
    """What a balance run decided: the tree, where each input item went, the quotas and each item's status."""

    task: Task
    dataset: InputDataset
    root: Node
    members: dict[str, list[int]]
    steps: dict[int, list[PathStep]]
    unrouted: dict[int, tuple[str, str]]
    quotas: dict[str, int]
    status: dict[int, str]


def export_balance(session: RunSession, outcome: BalanceOutcome) -> BalanceResult:
    """Write every export of a balance run (each atomically) and return the result."""
    store, out = session.store, session.store.out
    after = store.sample_counts()
    for leaf in outcome.root.leaves():
        leaf.samples, leaf.quota = after.get(leaf.id, 0), outcome.quotas.get(leaf.id, 0)
    tree = Tree(task=outcome.task, config=session.config.model_dump(mode="json"), root=outcome.root)
    write_atomic(out / "tree.json", tree.model_dump_json(indent=2))
    n_out = write_jsonl_atomic(out / "balanced.jsonl", _balanced_rows(store, outcome.dataset))
    write_jsonl_atomic(out / "routing.jsonl", _routing_rows(outcome))
    write_jsonl_atomic(out / "unrouted.jsonl", (outcome.dataset.records[i].record for i in sorted(outcome.unrouted)))
    write_jsonl_atomic(out / "rejected.jsonl", store.rejected())
    before = {leaf.id: len(outcome.members.get(leaf.id, [])) for leaf in outcome.root.leaves()}
    summary = session.write_record(_record(session, outcome, tree, n_out, before, after))
    write_report(out, summary, before, after)
    return BalanceResult(out=out, tree=tree, summary=summary)


def _record(session: RunSession, outcome: BalanceOutcome, tree: Tree, n_out: int, before: dict[str, int],
            after: dict[str, int]) -> Any:
    store, dataset, quotas = session.store, outcome.dataset, outcome.quotas
    tally = {name: sum(1 for s in outcome.status.values() if s == name) for name in STATUSES}
    shortfall = sum(max(0, q - after.get(leaf, 0)) for leaf, q in quotas.items())
    counts = Counts(samples=n_out, target=sum(quotas.values()), shortfall=shortfall, nodes=tree.node_count(),
                    leaves=len(before), max_depth=max(node.depth for node in tree.root.walk()),
                    infinite_splits=sum(1 for node in tree.root.walk() if is_infinite_split(node)),
                    input=len(dataset.records), **tally, synthesized=n_out - tally["kept"], **rejection_counts(store))
    return session.record(status="complete" if shortfall == 0 else "partial", counts=counts, task=outcome.task,
                          allocation={"quota": quotas},
                          input=BalanceInput(path=str(dataset.path), records=len(dataset.records),
                                             field=dataset.selector),
                          distribution=Distributions(before=_distribution(before, before),
                                                     after=_distribution(after, before)),
                          routing=_routing_stats(store))


def _distribution(counts: dict[str, int], leaves: dict[str, int]) -> Distribution:
    values = [counts.get(leaf, 0) for leaf in leaves]
    return Distribution(normalized_entropy=normalized_entropy(values), gini=gini(values),
                        empty_leaves=sum(1 for v in values if v == 0), samples=sum(values))


def _routing_stats(store: RunStore) -> RoutingStats:
    decisions = store.route_count()
    calls = sum(row["calls"] for row in store.ledger()["by_stage"] if row["stage"] == "routing")
    return RoutingStats(calls=calls, decisions=decisions,
                        calls_per_sample_per_level=round(calls / decisions, 4) if decisions else 0.0)


def _balanced_rows(store: RunStore, dataset: InputDataset) -> Iterator[dict[str, Any]]:
    by_line = {r.line: r.record for r in dataset.records}
    fields = dataset.text_fields
    shape = RecordShape.of(dataset)
    for sample in store.samples():
        meta = {"origin": sample.get("origin", "synthesized"), "leaf_id": sample["leaf_id"], "path": sample["path"]}
        if meta["origin"] == "original":
            yield {**by_line[sample["line"]], **meta}
        else:
            values = sample["fields"] if "fields" in sample else {fields[0]: sample["text"]}
            yield {**shape.fill(values), **meta}


@dataclass(frozen=True)
class RecordShape:
    """The originals' columns: every top-level key of the input records, and the keys of their ``fields`` objects.

    Synthesized rows are built in this shape so that synthesized and original rows share one key set.
    """

    columns: tuple[str, ...]
    nested: tuple[str, ...]

    @classmethod
    def of(cls, dataset: InputDataset) -> RecordShape:
        """The shape of ``dataset``'s records (keys in first-seen order)."""
        columns: dict[str, None] = {}
        nested: dict[str, None] = {}
        for record in dataset.records:
            columns.update(dict.fromkeys(record.record))
            inner = record.record.get("fields")
            if isinstance(inner, dict):
                nested.update(dict.fromkeys(inner))
        return cls(tuple(columns), tuple(nested))

    def fill(self, values: dict[str, Any]) -> dict[str, Any]:
        """A synthesized row: text fields take ``values`` (at the top level, or inside ``fields`` when the
        originals keep them there); every other column (ids, labels, metadata) is ``null``. A value the
        originals have no column for is added at the end."""
        row: dict[str, Any] = {}
        placed: set[str] = set()
        for key in self.columns:
            if key in values:
                row[key] = values[key]
                placed.add(key)
            elif key == "fields" and self.nested:
                row[key] = {name: values.get(name) for name in self.nested}
                placed.update(name for name in self.nested if name in values)
            else:
                row[key] = None
        row.update({key: value for key, value in values.items() if key not in placed})
        return row


def _routing_rows(outcome: BalanceOutcome) -> Iterator[dict[str, Any]]:
    leaf_of = {item: leaf for leaf, items in outcome.members.items() for item in items}
    for item, record in enumerate(outcome.dataset.records):
        row: dict[str, Any] = {"line": record.line, "status": outcome.status.get(item, "unrouted"),
                               "path": [s.model_dump() for s in outcome.steps.get(item, [])]}
        if item in outcome.unrouted:
            row["stopped_at"], row["reason"] = outcome.unrouted[item]
        else:
            row["leaf_id"] = leaf_of.get(item)
        yield row
