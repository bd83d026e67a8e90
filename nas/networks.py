"""One interface over the two CNN supernets: macro (`supernet`) and micro cells.

search, derive and final call these; the config's type picks the module, so the
phases are written once for both spaces.
"""

from __future__ import annotations

import dataclasses

from nas import micro_supernet
from nas import supernet as macro_supernet


def module(net_config):
    """The supernet module (init / apply / derive / apply_standalone) of a config."""
    if isinstance(net_config, micro_supernet.MicroConfig):
        return micro_supernet
    return macro_supernet


def make_config(space, width: int, in_channels: int, num_classes: int, layers: int):
    """The supernet config for `space`; `layers` is the micro stack's num_layers."""
    if space.name == "micro":
        return micro_supernet.MicroConfig(
            space, width, in_channels, num_classes, num_layers=layers
        )
    return macro_supernet.SupernetConfig(space, width, in_channels, num_classes)


def resized(net_config, width: int, layers: int | None = None):
    """The same supernet at another width (and, for micro cells, depth)."""
    changes = {"width": width}
    if layers and isinstance(net_config, micro_supernet.MicroConfig):
        changes["num_layers"] = layers
    return dataclasses.replace(net_config, **changes)


def init(key, net_config):
    return module(net_config).init(key, net_config)


def apply(params, net_config, arch, x):
    return module(net_config).apply(params, net_config, arch, x)


def derive(params, net_config, arch):
    return module(net_config).derive(params, net_config, arch)


def apply_standalone(params, net_config, arch, x):
    return module(net_config).apply_standalone(params, net_config, arch, x)


num_params = macro_supernet.num_params
