"""Error hierarchy, split by who must act.

* :class:`ConfigError` (and its subclasses) -- the caller's input is wrong: a bad flag, config key,
  task file or dataset. The CLI maps these to exit code 2 and prints the one-line message.
* :class:`TreeSynthError` subclasses raised during a run (:class:`GenerationError`, :class:`ProviderError`,
  :class:`RunStateError`) -- something failed at run time; the CLI maps them to exit code 1.

Every message is one line and names the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


RESUME_HINT = "re-run the same command with the same --out to resume"
"""How every interrupted or unfinished run, sweep and study is resumed (``run.json`` and the CLI say it)."""


CAP_RESUME_HINT = "re-run the same command with a higher --max-calls/--max-cost and the same --out to resume"
"""How a run stopped by a spending cap is resumed (``run.json`` and the CLI say it)."""


class TreeSynthError(Exception):
    """Root of every error treesynth raises on purpose."""


class ConfigError(TreeSynthError):
    """A usage mistake: bad configuration, task description, flag or model string."""


class DataError(ConfigError):
    """An input dataset or file is malformed (the message names the file and line)."""


class ProviderError(TreeSynthError):
    """A language-model provider failed or is unreachable after bounded retries."""


class BudgetExceededError(ProviderError):
    """A spending cap (``--max-calls``/``--max-cost``) would be exceeded, so no further call was started.

    The run stops ``partial``; the caps are not part of a run's identity, so re-running with a higher cap
    resumes it.
    """


class GenerationError(TreeSynthError):
    """An LLM step produced no usable output after its bounded attempts.

    Attributes:
        stage: The pipeline stage (``pivots``, ``criterion``, ``coverage``, ``leaf``).
        node_id: The tree node the step ran for.
    """

    def __init__(self, message: str, *, stage: str, node_id: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.node_id = node_id


class PartitionError(TreeSynthError):
    """A proposed split failed a structural check (empty, duplicate or overlapping values...)."""


class RunStateError(TreeSynthError):
    """The run directory cannot be used (another task's run, corrupt store, unwritable...)."""


class UnusableStoreError(ConfigError, RunStateError):
    """``--out`` holds a store treesynth must not touch (corrupt, truncated, foreign or newer): a usage error
    (exit 2) -- the fix is another ``--out`` -- and the store is left byte-identical."""


def first_validation_error(exc: ValidationError, *, with_key: bool = True) -> str:
    """The first error of a pydantic validation as one line: ``key.path: message``.

    The key is ``(root)`` for the object as a whole; ``with_key=False`` gives the message alone. pydantic's
    ``Value error, `` prefix (from a validator raising :class:`ValueError`) is dropped.
    """
    err = exc.errors()[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    if not with_key:
        return message
    key = ".".join(str(part) for part in err["loc"]) or "(root)"
    return f"{key}: {message}"
