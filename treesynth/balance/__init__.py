"""Balancing an existing dataset: route its samples through a tree, downsample and top up leaves."""

from treesynth.balance.dataset import InputDataset, InputRecord, load_input
from treesynth.balance.routing import Router, SampleRouter
from treesynth.balance.targets import BalanceTarget, choose_kept

__all__ = ["BalanceTarget", "InputDataset", "InputRecord", "Router", "SampleRouter", "choose_kept", "load_input"]
