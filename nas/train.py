"""ENAS search -> derive -> retrain, with the random-search control.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268): Table 2's macro and micro (cell) search spaces on CIFAR-10
(`config.space`: "macro" or "micro"). Three phases, each in
its own sub-workdir so each resumes on its own:

  search/  `nas.search`: child steps on shared weights alternating with
           REINFORCE controller updates; op shares per epoch (collapse).
  derive/  `nas.derive`: K sampled children scored with the shared weights on
           the validation split; the best one is the derived architecture.
  final/   `nas.final`: the derived architecture as a standalone network,
           trained from scratch and evaluated on the test split.

With `random_search=True` the same three phases run again under `random/` with
children drawn uniformly (no controller) at the same child-step budget and the
same K: the control every report shows. `kendall_archs >= 2` adds Kendall's tau
between shared-weight and stand-alone accuracy (`kendall/`). The summary keeps
search accuracy (shared weights, validation) and final accuracy (retrained,
test) apart.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
from absl import logging

from nas import controller as controller_lib
from nas import derive as derive_lib
from nas import final as final_lib
from nas import inputs, networks, plot, reinforce
from nas import search as search_lib
from nas import search_space as space_lib
from shared import workdir as workdir_lib
from shared.errors import ConfigError


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Area rules on top of shared/config.py; raises ConfigError naming the fix."""
    if config.space not in ("macro", "micro"):
        raise ConfigError(
            f"config.space={config.space!r}: set --config.space=macro or micro "
            "(the RNN-cell space has its own trainer)"
        )
    if config.width % 2:
        raise ConfigError(f"config.width={config.width} must be even; set it even")
    if config.num_layers < (1 if config.space == "micro" else 3):
        raise ConfigError(
            f"config.num_layers={config.num_layers} must be >= 3 (macro) or >= 1 "
            "(micro)"
        )
    if config.space == "micro" and config.get("num_cells", 0) < 1:
        raise ConfigError("config.num_cells (computed nodes per cell) must be >= 1")
    if config.final_network not in ("standalone", "supernet"):
        raise ConfigError(
            f"config.final_network={config.final_network!r}; set it to "
            "'standalone' (fixed network per arch) or 'supernet' (one compile)"
        )
    if not 0.0 < config.baseline_decay < 1.0:
        raise ConfigError("config.baseline_decay must be in (0, 1)")


def _run_mode(config, root, data, parts, mode):
    """search -> derive -> final for one mode ("enas" or "random"): summary."""
    net_config, ctrl_config, preprocess, step, retrainer = parts
    prefix = "" if mode == "enas" else "random_"
    t0 = time.time()
    state, result, shared_eval = search_lib.search(
        config,
        os.path.join(root, "search"),
        data,
        net_config,
        ctrl_config,
        preprocess,
        step,
        mode,
    )
    search_seconds = time.time() - t0
    derived = derive_lib.derive(
        config,
        os.path.join(root, "derive"),
        state,
        net_config,
        ctrl_config,
        shared_eval,
        mode,
    )
    t0 = time.time()
    test_acc, params = retrainer.train(
        os.path.join(root, "final"), derived["arch"], data, config.final_epochs, "test"
    )
    summary = {
        f"{prefix}search_valid_accuracy": derived["search_valid_accuracy"],
        f"{prefix}final_test_accuracy": test_acc,
        f"{prefix}final_params": params,
        f"{prefix}fixed_arc": derived["fixed_arc"],
        f"{prefix}search_seconds_this_run": search_seconds,
        f"{prefix}final_seconds_this_run": time.time() - t0,
    }
    if mode != "enas":
        return summary
    summary.update(
        {
            k.replace("eval/", ""): v
            for k, v in result.eval_metrics.items()
            if "op_share" in k
        }
    )
    summary["search_steps_per_second"] = result.steps_per_second
    if config.kendall_archs >= 2:
        tau, shared, alone = final_lib.kendall(
            config, os.path.join(root, "kendall"), derived, data, retrainer
        )
        summary["kendall_tau"] = tau
        workdir_lib.write_json(
            root,
            "kendall.json",
            {"tau": tau, "shared_valid": shared, "standalone_valid": alone},
        )
    return summary


def make_configs(config, data, num_classes):
    """The supernet and controller configs of `config.space`."""
    micro = config.space == "micro"
    size = config.num_cells if micro else config.num_layers
    space = space_lib.make_space(config.space, size)
    net_config = networks.make_config(
        space, config.width, data["train_x"].shape[-1], num_classes, config.num_layers
    )
    common = {
        "lstm_size": config.lstm_size,
        "tanh_constant": config.tanh_constant,
        "temperature": config.temperature,
    }
    if micro:
        common["op_tanh_reduce"] = config.op_tanh_reduce
        return net_config, controller_lib.micro_config(space, **common)
    common["skip_target"] = config.skip_target
    return net_config, controller_lib.ControllerConfig(space, **common)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """search -> derive -> final (and the random-search control); summary.json."""
    start = time.time()
    data, (mean, std), source, num_classes = inputs.load_data(config)
    net_config, ctrl_config = make_configs(config, data, num_classes)
    preprocess = inputs.make_preprocess(mean, std, config.augment, 0)
    spe = search_lib.steps_per_epoch(config, data)
    step = search_lib.make_search_step(  # one step (one compile) for both modes
        net_config,
        ctrl_config,
        config,
        search_lib.child_optimizer(config, config.lr_max, config.lr_min, spe),
        reinforce.make_optimizer(config.controller_lr),
        preprocess,
    )
    final_preprocess = inputs.make_preprocess(mean, std, config.augment, config.cutout)
    retrainer = final_lib.Retrainer(config, net_config, final_preprocess, spe)
    parts = (net_config, ctrl_config, preprocess, step, retrainer)
    summary = {
        "data_source": source,
        "image_size": int(data["train_x"].shape[1]),
        "device": jax.devices()[0].device_kind,
    }
    if "jpeg" in config.dataset:
        summary["data_note"] = inputs.JPEG_NOTE
    modes = ["enas"] + (["random"] if config.random_search else [])
    for mode in modes:
        root = workdir if mode == "enas" else os.path.join(workdir, "random")
        summary.update(_run_mode(config, root, data, parts, mode))
    plot.plot_search(
        os.path.join(workdir, "search", "metrics.jsonl"),
        os.path.join(workdir, "search_curves.png"),
    )
    summary["wall_seconds_this_run"] = time.time() - start
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
