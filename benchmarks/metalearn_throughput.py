r"""Meta-training episodes/s and peak RSS of the few-shot learners' step.

    JAX_PLATFORMS=cpu python -m benchmarks.metalearn_throughput \
        [--learner=protonet] [--way=5] [--shot=1] [--query=15] [--meta_batch=32] \
        [--episode_group=1] [--episode_loop=unroll|scan] [--chunk=0] \
        [--conv_impl=auto] [--cpu_dots=eigen|ynn] [--first_order] \
        [--remat] [--noblock_vjp] [--inner_steps=1] [--inner_lr=0.4] \
        [--seconds=20] [--repeats=3]

Issue 4's protocol, one learner per process (peak RSS is per process):
    --learner=protonet
    --learner=maml                  (second order, one inner SGD step, lr 0.4)
    --learner=maml --first_order
    --learner=maml --remat          (jax.checkpoint around the inner step)
What the checkpoint does to memory shows at several inner steps, e.g.
    --learner=maml --way=20 --shot=5 --query=5 --meta_batch=16 \
        --inner_steps=5 --inner_lr=0.1 [--remat]
and `--episode_group=0` for the plain path (the whole vmapped meta-batch
differentiated at once). The PyTorch per-task loop on the same workload:
`.venv-peers/bin/python benchmarks/peers/metalearn_peers.py`.

Times the jitted training step of `metalearn.train` (episode sampling on the
device, Conv-4 with per-episode BatchNorm statistics, Adam) on embedded
Omniglot (Vinyals split, rotations): compile, 3 warm-up steps, then
`--seconds` of steps, `--repeats` times; prints one JSON line per repeat and a
summary line with the median episodes/s, the compile and warm-up times, XLA's
temp-buffer size for the step and the peak RSS of the process (compilation
included). The step differentiates `--episode_group` episodes at a time
(`metalearn/accumulate.py`, the training default 1), the groups unrolled in
the graph or as one `lax.scan` step each (`--episode_loop`); `--chunk` splits each
convolution's batch into cache-sized pieces; `--conv_impl=winograd` runs the
large maps' convolutions as Winograd F(2x2, 3x3) matmuls (`metalearn/winograd.py`),
`--conv_impl=matmul` (`auto`'s choice on CPU) as patches x matmul with a
mask max-pool backward (`metalearn/conv_matmul.py`), `xla` as `lax.conv`.
"""

from __future__ import annotations

import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from metalearn import episodes as episodes_lib
from metalearn import train
from metalearn.configs import omniglot_maml, omniglot_matching, omniglot_protonet
from shared import heap

_HEAP = heap.define_flag()
_LEARNER = flags.DEFINE_enum(
    "learner", "protonet", ["protonet", "matching", "maml"], "Learner to time."
)
_FIRST_ORDER = flags.DEFINE_bool("first_order", False, "MAML: first order.")
_REMAT = flags.DEFINE_bool("remat", False, "MAML: jax.checkpoint inner steps.")
_BLOCK_VJP = flags.DEFINE_bool(
    "block_vjp", True, "MAML: hand-written block backward where differentiated once."
)
_INNER_STEPS = flags.DEFINE_integer("inner_steps", 1, "MAML: inner SGD steps.")
_INNER_LR = flags.DEFINE_float("inner_lr", 0.4, "MAML: inner SGD learning rate.")
_WAY = flags.DEFINE_integer("way", 5, "Training ways.")
_SHOT = flags.DEFINE_integer("shot", 1, "Training shots.")
_QUERY = flags.DEFINE_integer("query", 15, "Queries per class.")
_META_BATCH = flags.DEFINE_integer("meta_batch", 32, "Episodes per step.")
_CHUNK = flags.DEFINE_integer("chunk", 0, "Conv batch chunk (0 = off).")
_CONV_IMPL = flags.DEFINE_enum(
    "conv_impl",
    "auto",
    ["auto", "xla", "winograd", "matmul"],
    "3x3 conv implementation (auto: matmul on CPU, metalearn/conv_matmul.py).",
)
_CPU_DOTS = flags.DEFINE_enum(
    "cpu_dots",
    "eigen",
    ["eigen", "ynn"],
    "CPU matmul library (metalearn/train.py CPU_DOTS; ynn = XLA's default).",
)
_GROUP = flags.DEFINE_integer(
    "episode_group", 1, "Episodes differentiated together (0 = all at once)."
)
_LOOP = flags.DEFINE_enum(
    "episode_loop",
    None,
    ["scan", "unroll"],
    "Loop over episode groups (default: the config's).",
)
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Timed seconds per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; the median is reported.")


def main(argv) -> None:
    heap.configure(_HEAP.value, area="metalearn")  # before JAX starts its threads
    del argv
    modules = {
        "protonet": omniglot_protonet,
        "matching": omniglot_matching,
        "maml": omniglot_maml,
    }
    config = modules[_LEARNER.value].get_config("quick")
    if _LEARNER.value == "maml":  # defaults: 1 inner SGD step, lr 0.4 (the protocol)
        config.test_way = _WAY.value
        config.inner_steps, config.inner_lr = _INNER_STEPS.value, _INNER_LR.value
        config.first_order, config.remat = _FIRST_ORDER.value, _REMAT.value
        config.block_vjp = _BLOCK_VJP.value
    config.train_way, config.train_shot = _WAY.value, _SHOT.value
    config.train_query, config.meta_batch = _QUERY.value, _META_BATCH.value
    config.chunk = _CHUNK.value
    config.conv_impl = _CONV_IMPL.value
    config.cpu_dots = _CPU_DOTS.value
    config.episode_group = _GROUP.value
    if _LOOP.value is not None:
        config.episode_loop = _LOOP.value
    images, _ = episodes_lib.load_omniglot("vinyals", "train")
    data = episodes_lib.make_class_images(images, rotations=True)
    learner = train.make_learner(config)
    optimizer = train.make_optimizer(config)
    params, stats = jax.jit(learner.init)(jax.random.key(0))
    state = train.TrainState(
        params, stats, optimizer.init(params), jnp.zeros((), jnp.int32)
    )
    step = jax.jit(
        train.make_step(learner, optimizer, data.num_base, data.rotations, config),
        donate_argnums=0,
        compiler_options=train.compiler_options(config),
    )
    batch = {"images": data.images}
    start = time.perf_counter()
    step = step.lower(state, batch, jax.random.key(0)).compile()
    compile_only_s = time.perf_counter() - start
    temp_gb = step.memory_analysis().temp_size_in_bytes / 2**30
    for i in range(3):
        state, metrics = step(state, batch, jax.random.key(i))
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    rates = []
    for repeat in range(_REPEATS.value):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < _SECONDS.value:
            state, metrics = step(state, batch, jax.random.key(steps))
            steps += 1
            if steps % 4 == 0:
                jax.block_until_ready(metrics)
        jax.block_until_ready(state)
        rate = steps * config.meta_batch / (time.perf_counter() - start)
        rates.append(rate)
        print(json.dumps({"repeat": repeat, "episodes_per_second": rate}))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        json.dumps(
            {
                "learner": _LEARNER.value,
                "setting": f"{_WAY.value}w{_SHOT.value}s{_QUERY.value}q",
                "meta_batch": config.meta_batch,
                "chunk": config.chunk,
                "conv_impl": config.conv_impl,
                "cpu_dots": config.cpu_dots,
                "episode_group": config.episode_group,
                "episode_loop": config.episode_loop,
                "first_order": _FIRST_ORDER.value,
                "remat": _REMAT.value,
                "inner_steps": config.get("inner_steps"),
                "block_vjp": config.get("block_vjp"),
                "median_episodes_per_second": statistics.median(rates),
                "images_per_second": statistics.median(rates)
                * _WAY.value
                * (_SHOT.value + _QUERY.value),
                "warmup_seconds": compile_s,
                "compile_seconds": compile_only_s,
                "xla_temp_gb": temp_gb,
                "peak_rss_gb": peak_gb,
                "device": jax.devices()[0].device_kind,
                "load_average_1min": __import__("os").getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    app.run(main)
