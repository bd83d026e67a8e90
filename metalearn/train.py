"""Episodic meta-training of few-shot learners on Omniglot, then the test protocol.

    python -m scripts.train --config=metalearn/configs/omniglot_protonet.py:quick \
        --workdir=workdirs/protonet_quick

One loop for every learner with the interface of `protonets.py`: each step draws
a meta-batch of episodes from its own key (pure JAX sampling on the device),
takes one optax step on the mean episode loss and updates the BatchNorm running
statistics. `fit`'s evaluation at the last step scores the learner on
`test_episodes` fixed test episodes (mean accuracy and 95% CI, `evaluate.py`);
earlier evaluations use `eval_episodes` other test episodes, for monitoring
only (no model selection on them).

Spine workaround: a jitted step that closes over the (C, 20, 28, 28, 1) image
array would embed it in the program as a constant (tens of MB, seconds of
compile), and `fit` passes a step only `(state, batch, key)`. So the image array
rides in as the "batch" every step: one device array, its class axis padded to
a multiple of the device count and sharded over `data` once; `shard_batch`
finds it already placed. The sampled meta-batch itself is not sharded: on
several devices each one computes the whole step (replicated).
"""

from __future__ import annotations

import time

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from metalearn import accumulate, embeddings, evaluate, maml, matching, protonets
from metalearn import episodes as episodes_lib
from shared import mesh as mesh_lib
from shared import train_loop
from shared import workdir as workdir_lib
from shared.errors import ConfigError

LEARNERS = ("protonet", "matching", "maml")


@flax.struct.dataclass
class TrainState:
    params: dict
    stats: dict
    opt_state: optax.OptState
    step: jax.Array


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Area rules; raises ConfigError naming the field and the fix."""
    if config.learner not in LEARNERS:
        raise ConfigError(f"config.learner={config.learner!r}; use one of {LEARNERS}.")
    if config.split not in episodes_lib.SPLITS:
        raise ConfigError(
            f"config.split={config.split!r}; use one of {episodes_lib.SPLITS}."
        )
    if config.test_bn not in embeddings.BN_MODES:
        raise ConfigError(
            f"config.test_bn={config.test_bn!r}; use one of {embeddings.BN_MODES}."
        )
    for phase in ("train", "test"):
        shot, query = config[f"{phase}_shot"], config[f"{phase}_query"]
        if shot + query > 20:
            raise ConfigError(
                f"config.{phase}_shot + config.{phase}_query = {shot + query} but "
                "Omniglot has 20 drawings per character; lower one of them."
            )
        if config[f"{phase}_way"] < 2:
            raise ConfigError(f"config.{phase}_way must be >= 2.")
    group = config.episode_group
    if group < 0 or (group and config.meta_batch % group):
        raise ConfigError(
            f"config.episode_group={group} must be 0 (the whole meta-batch) or a "
            f"divisor of config.meta_batch={config.meta_batch}."
        )
    if config.episode_loop not in accumulate.EPISODE_LOOPS:
        raise ConfigError(
            f"config.episode_loop={config.episode_loop!r}; use one of "
            f"{accumulate.EPISODE_LOOPS} (--config.episode_loop=scan)."
        )
    if config.chunk < 0:
        raise ConfigError(f"config.chunk={config.chunk}; use 0 (off) or a size > 0.")
    if config.conv_impl not in embeddings.CONV_IMPLS:
        raise ConfigError(
            f"config.conv_impl={config.conv_impl!r}; use one of "
            f"{embeddings.CONV_IMPLS}."
        )
    if config.cpu_dots not in CPU_DOTS:
        raise ConfigError(
            f"config.cpu_dots={config.cpu_dots!r}; use one of {tuple(CPU_DOTS)} "
            "(--config.cpu_dots=eigen)."
        )
    if config.learner == "maml" and config.train_way != config.test_way:
        raise ConfigError(
            f"config.train_way={config.train_way} but config.test_way="
            f"{config.test_way}: MAML's head has one output per class; set them equal."
        )


# XLA:CPU runs a matmul either in YNNPACK (its default for dots and reductions)
# or in Eigen. Eigen's were faster on this path's shapes (16-image patches x
# (576, 64) and their transposes: 129-130 vs 115-117 GFLOP/s in isolation) and
# the ProtoNet step ran 11.6 vs 9.7 episodes/s (medians of 3 alternating runs;
# MAML level: 6.9-7.5 vs 6.6-7.1). YNNPACK keeps the reductions: with none of
# it the step was slower (README.md, "Speed and memory", session 21).
CPU_DOTS = {
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"},
    "ynn": {},
}


def compiler_options(config: ml_collections.ConfigDict) -> dict | None:
    """XLA options for the training step: `config.cpu_dots`'s on a CPU backend,
    none elsewhere."""
    if jax.default_backend() != "cpu":
        return None
    return dict(CPU_DOTS[config.cpu_dots]) or None


def make_learner(config: ml_collections.ConfigDict):
    if config.learner == "maml":
        return maml.MAML(
            n_way=config.train_way,
            hidden=config.hidden,
            depth=config.depth,
            inner_lr=config.inner_lr,
            train_steps=config.inner_steps,
            test_steps=config.test_inner_steps,
            first_order=config.first_order,
            meta_sgd=config.meta_sgd,
            remat=config.remat,
            block_vjp=config.block_vjp,
            task_loop=config.task_loop,
            chunk=config.chunk,
            conv_impl=config.conv_impl,
        )
    common = dict(
        hidden=config.hidden,
        depth=config.depth,
        test_bn=config.test_bn,
        chunk=config.chunk,
        conv_impl=config.conv_impl,
    )
    if config.learner == "protonet":
        return protonets.ProtoNet(**common)
    return matching.MatchingNet(
        fce=config.fce,
        fce_steps=config.fce_steps,
        similarity=config.similarity,
        **common,
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam with the learning rate halved every `lr_halve_every` steps (Snell)."""
    schedule = optax.exponential_decay(
        config.learning_rate, config.lr_halve_every, 0.5, staircase=True
    )
    return optax.adam(schedule)


def make_step(learner, optimizer, num_base: int, rotations: int, config):
    """The pure step `(state, {"images": ...}, key) -> (state, metrics)`."""
    way, shot, query = config.train_way, config.train_shot, config.train_query

    def step(state: TrainState, batch, key):
        data = episodes_lib.ClassImages(batch["images"], num_base, rotations)
        episodes = episodes_lib.sample_meta_batch(
            key, data, config.meta_batch, way, shot, query
        )
        (_, (metrics, stats)), grads = accumulate.value_and_grad(
            learner.episode_loss,
            state.params,
            state.stats,
            episodes,
            way,
            config.episode_group,
            config.episode_loop,
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            params=params, stats=stats, opt_state=opt_state, step=state.step + 1
        )
        return new_state, {f"train/{name}": value for name, value in metrics.items()}

    return step


class _SameImages:
    """An endless `batches` iterator that yields the class-indexed images."""

    def __init__(self, images: jax.Array):
        self.batch = {"images": images}

    def __iter__(self):
        return self

    def __next__(self):
        return self.batch

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        del state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Meta-trains, scores on fixed test episodes, writes `summary.json`."""
    validate_config(config)
    start = time.time()
    mesh = mesh_lib.make_mesh(config.get("num_devices"))
    train_np, train_source = episodes_lib.load_omniglot(
        config.split, "train", config.get("data_dir")
    )
    test_np, test_source = episodes_lib.load_omniglot(
        config.split, "test", config.get("data_dir")
    )
    workdir_lib.write_json(
        workdir, "data.json", {"train": train_source, "test": test_source}
    )
    devices = mesh.shape[mesh_lib.DATA_AXIS]
    train = episodes_lib.make_class_images(train_np, config.rotations, devices)
    train_images = mesh_lib.shard_batch(train.images, mesh)
    test = episodes_lib.make_class_images(test_np, config.rotations)

    learner = make_learner(config)
    key_init, key_train = jax.random.split(jax.random.key(config.seed))
    params, stats = jax.jit(learner.init)(key_init)  # one compile, not one per op
    optimizer = make_optimizer(config)
    state = TrainState(params, stats, optimizer.init(params), jnp.zeros((), jnp.int32))
    sizes = dict(n_way=config.test_way, k_shot=config.test_shot)
    sizes.update(n_query=config.test_query, chunk_episodes=config.eval_chunk)
    periodic = evaluate.make_evaluator(
        learner,
        test,
        num_episodes=config.eval_episodes,
        seed=config.test_seed + 1,
        **sizes,
    )
    final = evaluate.make_evaluator(
        learner,
        test,
        num_episodes=config.test_episodes,
        seed=config.test_seed,
        **sizes,
    )
    test_result = {}

    def eval_fn(state):
        """Monitoring episodes during training; the full test at the last step."""
        done = int(state.step) >= config.num_steps
        accuracies = (final if done else periodic)(state.params, state.stats)
        if done:
            test_result["accuracies"] = accuracies
        mean, ci95 = evaluate.confidence_interval(accuracies)
        prefix = "test" if done else "eval"
        return {f"{prefix}/accuracy": mean, f"{prefix}/ci95": ci95}

    result = train_loop.fit(
        make_step(learner, optimizer, train.num_base, train.rotations, config),
        state,
        workdir=workdir,
        num_steps=config.num_steps,
        key=key_train,
        batches=_SameImages(train_images),
        eval_fn=eval_fn,
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh,
        compiler_options=compiler_options(config),
    )
    accuracies = test_result.get("accuracies")
    if accuracies is None:  # fit evaluates at the last step; this is a fallback
        accuracies = final(result.state.params, result.state.stats)
    mean, ci95 = evaluate.confidence_interval(accuracies)
    setting = f"{config.test_way}-way {config.test_shot}-shot"
    summary = {
        "learner": config.learner,
        "test_setting": setting,
        "test_accuracy": mean,
        "test_ci95": ci95,
        "test_episodes": int(accuracies.size),
        "train_setting": f"{config.train_way}-way {config.train_shot}-shot "
        f"{config.train_query}-query x {config.meta_batch}",
        "steps": config.num_steps,
        "steps_per_second": result.steps_per_second,
        "episodes_per_second": result.steps_per_second * config.meta_batch,
        "wall_seconds_this_run": time.time() - start,
        "resumed_from_step": result.start_step,
        "data_source": f"{train_source} | {test_source}",
        "device": jax.devices()[0].device_kind,
    }
    logging.info("summary: %s", summary)
    workdir_lib.write_json(workdir, "summary.json", summary)
    return summary
