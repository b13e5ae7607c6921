"""A user's torch module for the ``package.module:factory`` backbone tests."""

from __future__ import annotations

from torch import nn


def make() -> nn.Module:
    """8 values in, 6 features out: a frozen body and an updatable projection."""
    return nn.Sequential(
        nn.Sequential(nn.Linear(8, 12), nn.Tanh()),  # "0.*": frozen
        nn.Linear(12, 6),  # "1.*": updatable
    )


def not_a_module() -> object:
    return object()
