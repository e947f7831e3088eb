"""Test doubles shipped with the library, so users can test their own tasks without a provider.

* :class:`FakeEngine` -- the deterministic fake model behind ``--model test/fake``;
* ``treesynth.testing.fake_server.FakeServer`` -- a fake OpenAI-compatible HTTP server on loopback with
  injectable faults (``python -m treesynth.testing.fake_server``). Import it from that package.
"""

from treesynth.testing.fake_lm import AsyncFakeEngine, FakeEngine, fake_answer

__all__ = ["AsyncFakeEngine", "FakeEngine", "fake_answer"]
