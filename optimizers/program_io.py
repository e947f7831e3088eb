"""Compiled program files: DSPy JSON state plus what the state fits.

A program file records the signature version (:data:`treesynth.signatures.SIGNATURE_VERSION`), each
predictor's input and output field names, the versions that wrote it, and free-form compile metadata.
:func:`load_program` refuses a file whose signatures do not match this treesynth with a
:class:`ProgramMismatchError` (a usage error) naming what differs and how to fix it.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import dspy

from treesynth.errors import ConfigError
from treesynth.program import TreeSynthProgram
from treesynth.signatures import SIGNATURE_VERSION
from treesynth.store import write_atomic

logger = logging.getLogger(__name__)

PROGRAM_FORMAT = "treesynth-program"
FORMAT_VERSION = 1


class ProgramMismatchError(ConfigError):
    """The program file was compiled for other signatures (or is not a program file)."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def signature_fingerprint(program: TreeSynthProgram) -> dict[str, dict[str, Any]]:
    """Per predictor: its input and output field names (what a compiled state must fit)."""
    out: dict[str, dict[str, Any]] = {}
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        out[name] = {"inputs": list(signature.input_fields), "outputs": list(signature.output_fields)}
    return out


def save_program(program: TreeSynthProgram, path: Path, *, compiled: dict[str, Any] | None = None) -> Path:
    """Write ``program``'s state and what it fits to ``path`` (JSON, atomically)."""
    document = {
        "format": PROGRAM_FORMAT,
        "format_version": FORMAT_VERSION,
        "signature_version": SIGNATURE_VERSION,
        "predictors": signature_fingerprint(program),
        "versions": {"treesynth": _version("treesynth"), "dspy": _version("dspy")},
        "compiled": compiled or {},
        "state": program.dump_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=2, ensure_ascii=False, default=str))
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"program file {path} does not exist; compile one with `treesynth compile`") from None
    except json.JSONDecodeError as exc:
        raise ProgramMismatchError(f"program file {path} is not valid JSON (line {exc.lineno}); recompile it "
                                   "with `treesynth compile`") from None
    if not isinstance(document, dict) or document.get("format") != PROGRAM_FORMAT:
        raise ProgramMismatchError(f"{path} is not a treesynth program file (written by `treesynth compile`)")
    return document


def _mismatches(document: dict[str, Any], expected: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if document.get("format_version") != FORMAT_VERSION:
        problems.append(f"file format {document.get('format_version')} (this treesynth reads {FORMAT_VERSION})")
    if str(document.get("signature_version")) != SIGNATURE_VERSION:
        problems.append(f"signature version {document.get('signature_version')} (this treesynth has "
                        f"{SIGNATURE_VERSION})")
    found = document.get("predictors") or {}
    for name in sorted(set(found) | set(expected)):
        if name not in expected:
            problems.append(f"unknown predictor {name}")
        elif name not in found:
            problems.append(f"no state for predictor {name}")
        elif found[name] != expected[name]:
            problems.append(f"{name} has fields {found[name]} (this treesynth: {expected[name]})")
    return problems


def load_program(path: Path) -> TreeSynthProgram:
    """A :class:`TreeSynthProgram` with the compiled state of ``path``.

    Raises:
        ConfigError: the file does not exist.
        ProgramMismatchError: not a program file, or compiled for other signatures or another file format.
    """
    document = _read(path)
    program = TreeSynthProgram()
    problems = _mismatches(document, signature_fingerprint(program))
    if problems:
        raise ProgramMismatchError(f"program file {path} does not fit this treesynth: {'; '.join(problems)}; "
                                   "recompile it with `treesynth compile`")
    dspy_version = document.get("versions", {}).get("dspy")
    if dspy_version != _version("dspy"):
        logger.warning("program file %s was written with dspy %s (installed: %s)", path, dspy_version,
                       _version("dspy"))
    try:
        program.load_state(document["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProgramMismatchError(f"program file {path} has an unreadable state ({exc}); recompile it with "
                                   "`treesynth compile`") from None
    return program


def program_metadata(path: Path) -> dict[str, Any]:
    """The ``compiled`` metadata of a program file (raises like :func:`load_program` on a foreign file)."""
    compiled: dict[str, Any] = _read(path).get("compiled") or {}
    return compiled


def instructions(program: dspy.Module) -> dict[str, str]:
    """Each predictor's current instruction text."""
    return {name: str(p.signature.instructions) for name, p in program.named_predictors()}
