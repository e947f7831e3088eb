"""Test doubles shipped with the library, so users can test their own tasks without a provider.

* :class:`FakeEngine` -- the deterministic fake model behind ``--model test/fake``;
* :class:`FakeServer` -- a fake OpenAI-compatible HTTP server on loopback with injectable faults
  (``python -m treesynth.testing.fake_server``).
"""

from treesynth.testing.fake_lm import AsyncFakeEngine, FakeEngine, fake_answer
from treesynth.testing.fake_server import FakeServer, FaultConfig

__all__ = ["AsyncFakeEngine", "FakeEngine", "FakeServer", "FaultConfig", "fake_answer"]
