"""An update's own parameters: ``POST /v1/update``'s body over the configured ``[update]``
(and ``[model] k``), checked with the same definition the config file is read with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.config import Config
from tailord.daemon.errors import TailordError
from tailord.trainer.spec import ModelSpec, UpdateParams
from tailord.trainer.structs import convert

KNN_HEADS = ("knn", "auto")  # the heads that have a k-NN memory (auto: until it trains)


class BadParameters(TailordError):
    """An update parameter is unknown or out of bounds; the message names it (see
    docs/configuration.md, [update])."""


def asked(table: Mapping[str, Any]) -> bodies.UpdateRequest:
    """A request body's JSON object as the request, or :class:`BadParameters` naming the key."""
    return convert(bodies.UpdateRequest, table, "update", error=BadParameters)


def given(request: bodies.UpdateRequest) -> dict[str, object]:
    """The keys ``request`` sets."""
    return {
        name: value
        for name, value in msgspec.structs.asdict(request).items()
        if value is not msgspec.UNSET
    }


def resolve(config: Config, request: bodies.UpdateRequest) -> bodies.UpdateRequest:
    """Every parameter of one update: ``request``'s keys over the configured ones."""
    keys = given(request)
    if "k" in keys and config.model.head not in KNN_HEADS:
        raise BadParameters(
            f"k = {keys['k']}: k applies to a k-NN head, and this model's head is "
            f'"{config.model.head}" ([model] head); leave k out'
        )
    k = keys.pop("k", config.model.k)
    params = convert(
        UpdateParams, {**config.update.to_dict(), **keys}, "update", error=BadParameters
    )
    # k's bounds are [model]'s; only k changes, so no other rule of the spec can fail here.
    convert(ModelSpec, {**config.model.to_dict(), "k": k}, "model", error=BadParameters)
    knn = {"k": k} if config.model.head in KNN_HEADS else {}
    return msgspec.convert({**params.to_dict(), **knn}, bodies.UpdateRequest)


def split(config: Config, stored: bodies.UpdateRequest) -> tuple[ModelSpec, UpdateParams]:
    """A resolved request as what the worker takes: the model spec (its ``k``) and the params."""
    keys = given(stored)
    k = keys.pop("k", config.model.k)
    params = convert(
        UpdateParams, {**config.update.to_dict(), **keys}, "update", error=BadParameters
    )
    assert isinstance(k, int)
    spec = config.model if config.model.k == k else msgspec.structs.replace(config.model, k=k)
    return spec, params
