"""Balancing an existing dataset: route its samples through a tree, downsample and top up leaves.

:class:`Balancer` (``treesynth.balance.balancer``) is the entry point; the other modules are its parts.
"""

from treesynth.balance.balancer import Balancer
from treesynth.balance.dataset import InputDataset, InputRecord, load_input
from treesynth.balance.export import BalanceResult
from treesynth.balance.routing import Router, SampleRouter
from treesynth.balance.targets import BalanceTarget, choose_kept

__all__ = ["BalanceResult", "BalanceTarget", "Balancer", "InputDataset", "InputRecord", "Router", "SampleRouter",
           "choose_kept", "load_input"]
