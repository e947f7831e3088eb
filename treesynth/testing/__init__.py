"""Test doubles shipped with the library, so users can test their own tasks without a provider."""

from treesynth.testing.fake_lm import AsyncFakeEngine, FakeEngine, fake_answer

__all__ = ["AsyncFakeEngine", "FakeEngine", "fake_answer"]
