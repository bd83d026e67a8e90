"""NAS throughput: supernet step (kernel / switch / mask) vs the fixed child.

    JAX_PLATFORMS=cpu python -m benchmarks.nas_throughput [--layers 6 --width 16]
        [--selects kernel,switch,mask|none] [--max_pool window|shifted]
        [--channels 3 --image_size 32]   # CIFAR-10 shapes (paper presets)

Prints JSON lines: train-step time (forward + backward + SGD, batch 64 of
28x28x1) for the supernet with `lax.switch`, with masked selection, and for the
same architectures built as fixed networks (micro space: `--space=micro
--layers=3 --cells=5 --image_size=14`, the `quick` preset's network); then the
time to sample 1000 architectures and to score their log-probabilities. Issue
5's target: supernet step with a sampled arch within 1.3x of the same arch as a
fixed network, so each select is timed on exactly the `--archs` sampled archs
that are built as fixed networks (the supernet once compiled, the arch as
data; the fixed network compiled per arch), supernet and child alternating per
arch and repeat; the `ratio_<select>` row is the mean supernet time over the
mean fixed time (before 2026-11-27 the supernet cycled over 8 archs and the
child over the first 2, which weighs different archs). Each number is the
median of 3 repeats of `--steps` steps after a warm-up; peak RSS beside them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import jax
import numpy as np
import optax

from nas import controller as controller_lib
from nas import networks
from nas import search_space as space_lib
from nas import supernet as supernet_lib
from shared import heap


def _time(fn, steps: int, repeats: int = 3) -> float:
    jax.block_until_ready(fn(0))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            out = fn(i)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--selects", default="kernel,switch,mask")
    parser.add_argument(
        "--max_pool", default="window", choices=["window", "shifted"]
    )  # supernet.MAX_POOL, for the supernet and the fixed child alike
    parser.add_argument("--skip_controller", action="store_true")
    parser.add_argument("--space", default="macro", choices=["macro", "micro"])
    parser.add_argument("--cells", type=int, default=5)  # micro: nodes per cell
    parser.add_argument("--image_size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)  # 3 for CIFAR sizes
    parser.add_argument("--archs", type=int, default=2)  # each a fixed-net compile
    parser.add_argument("--heap", default="auto", choices=heap.MODES, help=heap.HELP)
    args = parser.parse_args()
    heap.configure(args.heap, area="nas")  # before JAX starts its threads
    supernet_lib.MAX_POOL = args.max_pool
    if args.space == "micro":  # --layers is then the official num_layers
        space = space_lib.micro_space(args.cells)
    else:
        space = space_lib.macro_space(args.layers)
    config = networks.make_config(space, args.width, args.channels, 10, args.layers)
    net = networks.module(config)
    params = net.init(jax.random.key(0), config)
    size = args.image_size
    x = jax.random.normal(jax.random.key(1), (args.batch, size, size, args.channels))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    archs = [space_lib.random_arch(jax.random.key(3 + i), space) for i in range(8)]
    optimizer = optax.sgd(0.01, momentum=0.9, nesterov=True)

    def make_step(forward):
        def step(params, opt_state, arch):
            def loss_fn(p):
                logits = forward(p, arch, x)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            grads = jax.grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return jax.jit(step)

    rss = lambda: round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # noqa: E731

    def emit(what, seconds=None, **extra):
        row = {"what": what, "seconds": seconds, **extra, "layers": args.layers}
        row.update(space=args.space, image_size=size)
        row.update(width=args.width, batch=args.batch, peak_rss_mb=rss())
        row["channels"] = args.channels
        row["max_pool"] = args.max_pool
        row["device"] = jax.devices()[0].device_kind
        print(json.dumps(row), flush=True)

    ctrl_spaces = {
        "L12": space_lib.macro_space(12),
        "micro_B5": space_lib.micro_space(),
    }
    for name, ctrl_space in ctrl_spaces.items():
        if args.skip_controller:
            break
        ctrl_config = controller_lib.ControllerConfig(ctrl_space)
        if ctrl_space.name == "micro":
            ctrl_config = controller_lib.micro_config(ctrl_space)
        ctrl = controller_lib.init(jax.random.key(0), ctrl_config)
        sample = jax.jit(
            lambda k, c=ctrl, cc=ctrl_config: controller_lib.sample(c, cc, k, 1000)
        )
        keys = jax.random.split(jax.random.key(5), 10)
        emit(
            f"controller_sample_1000_{name}",
            _time(lambda i, f=sample, k=keys: f(k[i]), 3),
        )
        sampled = sample(keys[0]).arch
        score = jax.jit(
            lambda a, c=ctrl, cc=ctrl_config: controller_lib.score(c, cc, a).log_prob
        )
        emit(
            f"controller_logprob_1000_{name}",
            _time(lambda i, f=score, a=sampled: f(a), 3),
        )

    selects = [s for s in args.selects.split(",") if s != "none"]  # none: child only
    archs = archs[: args.archs]  # each also compiled as a fixed network

    def make_run(step, state, arch):
        def run(i):
            state[:] = step(state[0], state[1], arch)
            return state[0]

        return run

    runs = {}  # (name, arch index) -> run; the supernet compiled once per select
    for select in selects:
        step = make_step(lambda p, a, x, s=select: net.apply(p, config, a, x, s))
        state = [params, optimizer.init(params)]
        for i, arch in enumerate(archs):
            runs[select, i] = make_run(step, state, arch)
    for i, arch in enumerate(archs):
        arch_np = np.asarray(arch)
        child = net.derive(params, config, arch_np)
        step = make_step(
            lambda p, a, x, an=arch_np: net.apply_standalone(p, config, an, x)
        )
        runs["fixed", i] = make_run(step, [child, optimizer.init(child)], None)
    times = {key: [] for key in runs}
    for repeat in range(3):  # alternate, so drifting load hits every variant
        for key in runs if repeat % 2 == 0 else reversed(list(runs)):
            times[key].append(_time(runs[key], args.steps, repeats=1))
    mean = {}
    for name in [*selects, "fixed"]:
        per_arch = [statistics.median(times[name, i]) for i in range(len(archs))]
        mean[name] = float(np.mean(per_arch))
        what = "fixed_child_step" if name == "fixed" else f"supernet_step_{name}"
        emit(f"{what}_mean_of_{len(archs)}_archs", mean[name])
    for select in selects:
        emit(f"ratio_{select}", ratio=round(mean[select] / mean["fixed"], 3))
    for select in selects:  # a controller step scores each sample by a forward pass
        forward = jax.jit(lambda p, a, s=select: net.apply(p, config, a, x, s))
        emit(
            f"supernet_forward_{select}_mean_of_{len(archs)}_archs",
            float(
                np.mean(
                    [
                        _time(lambda i, a=a, f=forward: f(params, a), args.steps)
                        for a in archs
                    ]
                )
            ),
        )


if __name__ == "__main__":
    main()
