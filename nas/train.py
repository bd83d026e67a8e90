"""ENAS macro search -> derive -> retrain, with the random-search control.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018,
arXiv:1802.03268): Table 2's macro search space (CIFAR-10). Three phases, each in
its own sub-workdir so each resumes on its own:

  search/  `fit` over child steps: one child SGD step (Nesterov momentum, cosine
           restarts, l2, clipping) on a child sampled from the controller, and
           every `controller_every` steps one REINFORCE update on
           `num_aggregate` children, each rewarded by its accuracy on its own
           validation minibatch. Every epoch: op share of sampled children (the
           collapse diagnostic) and their shared-weight validation accuracy.
  derive/  K sampled children scored with the shared weights on the validation
           split; the best one is the derived architecture (derive.json).
  final/   the derived architecture as a standalone network, trained from
           scratch and evaluated on the test split.

With `random_search=True` the same three phases run again under `random/` with
children drawn uniformly (no controller) at the same child-step budget and the
same K: the control every report shows. The summary keeps search accuracy
(shared weights, validation) and final accuracy (retrained, test) apart.
"""

from __future__ import annotations

import functools
import os
import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from nas import controller as controller_lib
from nas import diagnostics, plot, reinforce
from nas import search_space as space_lib
from nas import supernet as supernet_lib
from shared import data as data_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.batches import BatchIterator, iterate_once
from shared.errors import ConfigError

JPEG_NOTE = "cifar10_jpeg is a JPEG re-encoded CIFAR-10 (not bit-exact)"


def validate_config(config: ml_collections.ConfigDict) -> None:
    if config.space != "macro":
        raise ConfigError(
            f"config.space={config.space!r}: only 'macro' is implemented; "
            "set --config.space=macro"
        )
    if config.width % 2:
        raise ConfigError(f"config.width={config.width} must be even; set it even")
    if config.num_layers < 3:
        raise ConfigError(f"config.num_layers={config.num_layers} must be >= 3")
    if not 0.0 < config.baseline_decay < 1.0:
        raise ConfigError("config.baseline_decay must be in (0, 1)")


@flax.struct.dataclass
class SearchState:
    child: dict
    child_opt: optax.OptState
    controller: reinforce.ControllerState
    controller_metrics: dict
    step: jax.Array


@flax.struct.dataclass
class ChildState:
    params: dict
    opt_state: optax.OptState
    step: jax.Array


class SearchBatches:
    """A train batch and the controller's validation batches, both resumable."""

    def __init__(self, train: BatchIterator, valid: BatchIterator | None):
        self.train, self.valid = train, valid

    def __next__(self):
        batch = next(self.train)
        if self.valid is not None:
            valid = next(self.valid)
            batch.update(valid_image=valid["image"], valid_label=valid["label"])
        return batch

    def get_state(self):
        state = {"train": self.train.get_state()}
        if self.valid is not None:
            state["valid"] = self.valid.get_state()
        return state

    def set_state(self, state):
        self.train.set_state(state["train"])
        if self.valid is not None:
            self.valid.set_state(state["valid"])


def cosine_restarts(lr_max, lr_min, t0, t_mul, steps_per_epoch):
    """SGDR (Loshchilov & Hutter 2017) in epochs, as the official child lr."""

    def schedule(step):
        epoch = step / steps_per_epoch
        if t_mul == 1:
            cycle = jnp.floor(epoch / t0)
            start, length = cycle * t0, t0
        else:
            cycle = jnp.floor(jnp.log(epoch / t0 * (t_mul - 1) + 1) / np.log(t_mul))
            start = t0 * (t_mul**cycle - 1) / (t_mul - 1)
            length = t0 * t_mul**cycle
        phase = (epoch - start) / length
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + jnp.cos(np.pi * phase))

    return schedule


def child_optimizer(config, lr_max, lr_min, steps_per_epoch):
    """l2 (official: l2 * sum w^2 in the loss), clip 5, Nesterov momentum 0.9."""
    schedule = cosine_restarts(
        lr_max, lr_min, config.lr_t0, config.lr_t_mul, steps_per_epoch
    )
    return optax.chain(
        optax.add_decayed_weights(2 * config.l2),
        optax.clip_by_global_norm(config.grad_clip),
        optax.sgd(schedule, momentum=0.9, nesterov=True),
    )


def make_preprocess(mean, std, augment: bool, cutout: int):
    """uint8 (B, H, W, C) -> normalized float; optional crop/flip and cutout."""
    mean, std = jnp.asarray(mean), jnp.asarray(std)

    def preprocess(images, key=None):
        x = (images.astype(jnp.float32) / 255.0 - mean) / std
        if key is None:
            return x
        b, h, w, _ = x.shape
        key_crop, key_flip, key_cut = jax.random.split(key, 3)
        if augment:
            padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
            offsets = jax.random.randint(key_crop, (b, 2), 0, 9)
            x = jax.vmap(
                lambda img, o: jax.lax.dynamic_slice(
                    img, (o[0], o[1], 0), (h, w, x.shape[3])
                )
            )(padded, offsets)
            flip = jax.random.bernoulli(key_flip, 0.5, (b, 1, 1, 1))
            x = jnp.where(flip, x[:, :, ::-1], x)
        if cutout:
            centre = jax.random.randint(key_cut, (b, 2), 0, jnp.array([h, w]))
            rows = jnp.abs(jnp.arange(h)[None, :] - centre[:, :1]) < (cutout + 1) // 2
            cols = jnp.abs(jnp.arange(w)[None, :] - centre[:, 1:]) < (cutout + 1) // 2
            x = x * ~(rows[:, :, None] & cols[:, None, :])[..., None]
        return x

    return preprocess


def _xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_search_step(
    net_config, ctrl_config, config, child_opt, ctrl_opt, preprocess, mode
):
    """The pure search step `(SearchState, batch, key) -> (state, metrics)`."""
    space = net_config.space

    def accuracy(child, arch, images, labels):
        logits = supernet_lib.apply(child, net_config, arch, preprocess(images))
        return (logits.argmax(-1) == labels).mean()

    def step(state: SearchState, batch, key):
        key_arch, key_aug, key_ctrl = jax.random.split(key, 3)
        if mode == "random":
            arch = space_lib.random_arch(key_arch, space)
        else:
            ctrl_params = state.controller.params
            arch = controller_lib.rollout(ctrl_params, ctrl_config, key_arch).arch
        images = preprocess(batch["image"], key_aug)

        def loss_fn(child):
            logits = supernet_lib.apply(child, net_config, arch, images)
            return _xent(logits, batch["label"]), (
                logits.argmax(-1) == batch["label"]
            ).mean()

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.child)
        updates, child_opt_state = child_opt.update(grads, state.child_opt, state.child)
        child = optax.apply_updates(state.child, updates)
        controller, ctrl_metrics = state.controller, state.controller_metrics
        if mode == "enas":
            num = config.num_aggregate
            valid_x = batch["valid_image"].reshape(
                (num, -1) + batch["valid_image"].shape[1:]
            )
            valid_y = batch["valid_label"].reshape(num, -1)

            def reward_fn(archs):
                return jax.lax.map(
                    lambda a: accuracy(child, a[0], a[1], a[2]),
                    (archs, valid_x, valid_y),
                )

            def train_controller(controller):
                return reinforce.update(
                    controller,
                    key_ctrl,
                    ctrl_config,
                    ctrl_opt,
                    reward_fn,
                    num_samples=num,
                    entropy_weight=config.entropy_weight,
                    baseline_decay=config.baseline_decay,
                    skip_weight=config.skip_weight,
                )

            due = (state.step + 1) % config.controller_every == 0
            controller, ctrl_metrics = jax.lax.cond(
                due, train_controller, lambda c: (c, ctrl_metrics), controller
            )
        new_state = SearchState(
            child, child_opt_state, controller, ctrl_metrics, state.step + 1
        )
        return new_state, {"train/loss": loss, "train/accuracy": acc, **ctrl_metrics}

    return step


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _sample(params, ctrl_config, key, num, mode):
    if mode == "random":
        keys = jax.random.split(key, num)
        return jax.vmap(lambda k: space_lib.random_arch(k, ctrl_config.space))(keys)
    return controller_lib.sample(params, ctrl_config, key, num).arch


def _sample_archs(state, ctrl_config, space, key, num, mode):
    """(num, length) archs from the controller, or uniform when `mode=random`."""
    del space  # ctrl_config.space
    return _sample(state.controller.params, ctrl_config, key, num, mode)


@functools.partial(jax.jit, static_argnums=1)
def _shared_hits(params, net_config, arch, images, labels):
    logits = supernet_lib.apply(params, net_config, arch, images)
    return (logits.argmax(-1) == labels).sum()


def make_shared_eval(net_config, images, labels, batch_size):
    """(child params, arch) -> shared-weight accuracy on normalized `images`."""

    def evaluate(child, arch):
        hits = sum(
            int(_shared_hits(child, net_config, arch, b["x"], b["y"]))
            for b in iterate_once({"x": images, "y": labels}, batch_size)
        )
        return hits / len(labels)

    return evaluate


def search(config, workdir, data, net_config, ctrl_config, preprocess, mode):
    """Runs (or resumes) the search phase; returns (state, FitResult)."""
    space = net_config.space
    spe = len(data["train_y"]) // config.batch_size
    child_opt = child_optimizer(config, config.lr_max, config.lr_min, spe)
    ctrl_opt = reinforce.make_optimizer(config.controller_lr)
    key_child, key_ctrl, key_run, key_eval = jax.random.split(
        jax.random.key(config.seed), 4
    )
    child = supernet_lib.init(key_child, net_config)
    controller = reinforce.init_state(key_ctrl, ctrl_config, ctrl_opt)
    zero = jnp.zeros((), jnp.float32)
    names = [
        "loss",
        "reward",
        "valid_accuracy",
        "baseline",
        "entropy",
        "log_prob",
        "skip_rate",
    ]
    metrics = {f"controller/{n}": zero for n in names} if mode == "enas" else {}
    state = SearchState(
        child, child_opt.init(child), controller, metrics, jnp.zeros((), jnp.int32)
    )
    train = BatchIterator(
        {"image": data["train_x"], "label": data["train_y"]},
        config.batch_size,
        config.seed,
    )
    valid = None
    if mode == "enas":
        valid = BatchIterator(
            {"image": data["valid_x"], "label": data["valid_y"]},
            config.num_aggregate * config.valid_batch_size,
            config.seed + 1,
        )
    count = config.eval_examples
    valid_x = np.asarray(preprocess(data["valid_x"][:count]))
    shared_eval = make_shared_eval(
        net_config, valid_x, data["valid_y"][:count], config.eval_batch_size
    )

    def eval_fn(s):
        archs = np.asarray(
            _sample_archs(
                s,
                ctrl_config,
                space,
                jax.random.fold_in(key_eval, int(s.step)),
                config.op_share_samples,
                mode,
            )
        )
        accs = [shared_eval(s.child, a) for a in archs[: config.eval_archs]]
        share = space_lib.op_share(space, archs)
        return {
            "search_valid_accuracy": float(np.mean(accs)),
            **{f"eval/{k}": v for k, v in share.items()},
        }

    step = make_search_step(
        net_config, ctrl_config, config, child_opt, ctrl_opt, preprocess, mode
    )
    result = train_loop.fit(
        step,
        state,
        workdir=workdir,
        num_steps=config.search_epochs * spe,
        key=key_run,
        batches=SearchBatches(train, valid),
        eval_fn=eval_fn,
        log_every=config.log_every,
        eval_every=spe,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
    )
    return result.state, result, shared_eval


def derive(config, workdir, state, net_config, ctrl_config, shared_eval, mode):
    """Best of K sampled archs on validation with the shared weights (cached)."""
    path = os.path.join(workdir, "derive.json")
    if os.path.exists(path):
        return workdir_lib.read_json(workdir, "derive.json")
    key = jax.random.fold_in(jax.random.key(config.seed), 7)
    archs = np.asarray(
        _sample_archs(
            state, ctrl_config, net_config.space, key, config.derive_samples, mode
        )
    )
    accs = [shared_eval(state.child, a) for a in archs]
    best = int(np.argmax(accs))
    result = {
        "arch": archs[best].tolist(),
        "fixed_arc": space_lib.to_fixed_arc(net_config.space, archs[best]),
        "search_valid_accuracy": accs[best],
        "candidate_valid_accuracies": accs,
        "candidates": [a.tolist() for a in archs],
    }
    workdir_lib.write_json(workdir, "derive.json", result)
    plot.plot_macro(net_config.space, archs[best], os.path.join(workdir, "derived.png"))
    return result


def final(config, workdir, arch, data, net_config, preprocess, epochs, split):
    """Trains `arch` standalone from scratch; returns (`split` accuracy, #params)."""
    arch = space_lib.validate(net_config.space, arch)
    final_config = supernet_lib.SupernetConfig(
        net_config.space,
        config.final_width,
        net_config.in_channels,
        net_config.num_classes,
    )
    spe = len(data["train_y"]) // config.batch_size
    opt = child_optimizer(config, config.final_lr_max, config.final_lr_min, spe)
    key_init, key_run = jax.random.split(
        jax.random.fold_in(jax.random.key(config.seed), 11)
    )
    params = supernet_lib.init_standalone(key_init, final_config, arch)
    state = ChildState(params, opt.init(params), jnp.zeros((), jnp.int32))

    def step(state, batch, key):
        images = preprocess(batch["image"], key)

        def loss_fn(p):
            logits = supernet_lib.apply_standalone(p, final_config, arch, images)
            hits = logits.argmax(-1) == batch["label"]
            return _xent(logits, batch["label"]), hits.mean()

        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = ChildState(params, opt_state, state.step + 1)
        return new_state, {"train/loss": loss, "train/accuracy": acc}

    @jax.jit
    def predict(p, x):
        return supernet_lib.apply_standalone(p, final_config, arch, x).argmax(-1)

    images = np.asarray(preprocess(data[f"{split}_x"]))
    labels = data[f"{split}_y"]

    def eval_fn(s):
        hits = sum(
            int((predict(s.params, b["x"]) == b["y"]).sum())
            for b in iterate_once({"x": images, "y": labels}, config.eval_batch_size)
        )
        return {f"{split}_accuracy": hits / len(labels)}

    batches = BatchIterator(
        {"image": data["train_x"], "label": data["train_y"]},
        config.batch_size,
        config.seed + 2,
    )
    result = train_loop.fit(
        step,
        state,
        workdir=workdir,
        num_steps=epochs * spe,
        key=key_run,
        batches=batches,
        eval_fn=eval_fn,
        log_every=config.log_every,
        eval_every=config.final_eval_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh_lib.make_mesh(config.num_devices),
    )
    accuracy = result.eval_metrics[f"eval/{split}_accuracy"]
    return accuracy, supernet_lib.num_params(params)


def kendall(config, workdir, derived, data, net_config, preprocess):
    """Tau between shared-weight and short stand-alone validation accuracy."""
    count = config.kendall_archs
    archs = derived["candidates"][:count]
    shared = derived["candidate_valid_accuracies"][:count]
    standalone = [
        final(
            config,
            os.path.join(workdir, f"arch_{i}"),
            arch,
            data,
            net_config,
            preprocess,
            config.kendall_epochs,
            "valid",
        )[0]
        for i, arch in enumerate(archs)
    ]
    return diagnostics.kendall_tau(shared, standalone), shared, standalone


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Average-pools (N, H, W, C) uint8 by an integer factor to (N, size, size, C)."""
    factor = images.shape[1] // size
    if size == images.shape[1]:
        return images
    if factor * size != images.shape[1] or images.shape[1] != images.shape[2]:
        raise ConfigError(
            f"config.image_size={size} must divide the image side "
            f"{images.shape[1]}; set --config.image_size=0 (native) or a divisor"
        )
    n, _, _, c = images.shape
    pooled = images.reshape(n, size, factor, size, factor, c).mean(axis=(2, 4))
    return np.round(pooled).astype(np.uint8)


def load_data(config):
    """Train (first N), validation (last N of train) and test splits, resized."""
    train = data_lib.load(config.dataset, "train", config.get("data_dir"))
    test = data_lib.load(config.dataset, "test", config.get("data_dir"))
    count = config.valid_examples
    if config.train_examples + count > len(train):
        raise ConfigError(
            f"train_examples + valid_examples = {config.train_examples + count} "
            f"exceeds the {len(train)} training examples; lower them"
        )
    size = config.image_size or train.images.shape[1]
    images, labels = _resize(train.images, size), train.labels
    test_count = config.test_examples or None
    data = {
        "train_x": images[: config.train_examples],
        "train_y": labels[: config.train_examples],
        "valid_x": images[len(train) - count :],
        "valid_y": labels[len(train) - count :],
        "test_x": _resize(test.images[:test_count], size),
        "test_y": test.labels[:test_count],
    }
    pixels = data["train_x"].astype(np.float32) / 255.0
    stats = (pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2)) + 1e-3)
    return data, stats, train.source, train.num_classes


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """search -> derive -> final (and the random-search control); summary.json."""
    start = time.time()
    data, (mean, std), source, num_classes = load_data(config)
    space = space_lib.macro_space(config.num_layers)
    net_config = supernet_lib.SupernetConfig(
        space, config.width, data["train_x"].shape[-1], num_classes
    )
    ctrl_config = controller_lib.ControllerConfig(
        space,
        lstm_size=config.lstm_size,
        tanh_constant=config.tanh_constant,
        temperature=config.temperature,
        skip_target=config.skip_target,
    )
    preprocess = make_preprocess(mean, std, config.augment, 0)
    final_preprocess = make_preprocess(mean, std, config.augment, config.cutout)
    summary = {
        "data_source": source,
        "image_size": int(data["train_x"].shape[1]),
        "device": jax.devices()[0].device_kind,
    }
    if "jpeg" in config.dataset:
        summary["data_note"] = JPEG_NOTE
    modes = ["enas"] + (["random"] if config.random_search else [])
    for mode in modes:
        root = workdir if mode == "enas" else os.path.join(workdir, "random")
        prefix = "" if mode == "enas" else "random_"
        t0 = time.time()
        state, result, shared_eval = search(
            config,
            os.path.join(root, "search"),
            data,
            net_config,
            ctrl_config,
            preprocess,
            mode,
        )
        search_seconds = time.time() - t0
        derived = derive(
            config,
            os.path.join(root, "derive"),
            state,
            net_config,
            ctrl_config,
            shared_eval,
            mode,
        )
        t0 = time.time()
        test_acc, params = final(
            config,
            os.path.join(root, "final"),
            derived["arch"],
            data,
            net_config,
            final_preprocess,
            config.final_epochs,
            "test",
        )
        summary.update(
            {
                f"{prefix}search_valid_accuracy": derived["search_valid_accuracy"],
                f"{prefix}final_test_accuracy": test_acc,
                f"{prefix}final_params": params,
                f"{prefix}fixed_arc": derived["fixed_arc"],
                f"{prefix}search_seconds_this_run": search_seconds,
                f"{prefix}final_seconds_this_run": time.time() - t0,
            }
        )
        if mode == "enas":
            summary.update(
                {
                    k.replace("eval/", ""): v
                    for k, v in result.eval_metrics.items()
                    if "op_share" in k
                }
            )
            summary["search_steps_per_second"] = result.steps_per_second
            if config.kendall_archs >= 2:
                tau, shared, alone = kendall(
                    config,
                    os.path.join(root, "kendall"),
                    derived,
                    data,
                    net_config,
                    final_preprocess,
                )
                summary["kendall_tau"] = tau
                workdir_lib.write_json(
                    root,
                    "kendall.json",
                    {"tau": tau, "shared_valid": shared, "standalone_valid": alone},
                )
    summary["wall_seconds_this_run"] = time.time() - start
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
