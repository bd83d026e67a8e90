"""Shared fields and variant parsing of the Omniglot few-shot configs.

A variant is `<budget>` or `<budget>_<setting>`: budget `smoke` (seconds, for
tests), `demo` (about a minute and a half on 2 CPU cores, for
`scripts/reproduce --preset=demo`), `quick` (minutes on a CPU) or `paper` (the
published schedule); setting
`5w1s` (default), `5w5s`, `20w1s` or `20w5s`, the test ways and shots.
"""

import re

import ml_collections

from shared.errors import ConfigError

BUDGETS = ("smoke", "demo", "quick", "paper")


def parse_variant(variant: str) -> tuple[str, int, int]:
    """`"paper_20w5s"` -> ("paper", 20, 5)."""
    match = re.fullmatch(r"(smoke|demo|quick|paper)(?:_(5|20)w(1|5)s)?", variant)
    if match is None:
        raise ConfigError(
            f"unknown config variant {variant!r}; use smoke, demo, quick or paper, "
            "optionally with _5w1s, _5w5s, _20w1s or _20w5s (e.g. :paper_20w1s)"
        )
    budget, way, shot = match.groups()
    return budget, int(way or 5), int(shot or 1)


def base_config(learner: str, variant: str) -> ml_collections.ConfigDict:
    budget, way, shot = parse_variant(variant)
    if budget == "demo" and learner != "protonet":
        raise ConfigError(
            f"no demo variant for {learner}; use omniglot_protonet.py:demo, or "
            "smoke, quick or paper"
        )
    config = ml_collections.ConfigDict()
    config.area = "metalearn"
    config.variant = variant
    config.learner = learner
    config.seed = 0
    config.data_dir = ml_collections.config_dict.placeholder(str)
    config.num_devices = ml_collections.config_dict.placeholder(int)
    config.split = "vinyals"  # or "official" (background / evaluation)
    config.rotations = True
    # model
    config.hidden = 64
    config.depth = 4  # conv blocks (Conv-4)
    config.test_bn = "running"  # BatchNorm at test: running stats (Snell's eval())
    config.chunk = 0  # conv batch chunking, a CPU speed knob (0 = off)
    # "auto": patches x matmul on CPU (metalearn/conv_matmul.py), lax.conv
    # elsewhere; or "xla", "winograd" (F(2x2, 3x3) on large maps), "matmul"
    config.conv_impl = "auto"
    # which library runs the training step's matmuls on a CPU backend: "eigen"
    # (faster here, metalearn/train.py CPU_DOTS) or "ynn" (XLA's default)
    config.cpu_dots = "eigen"
    # episodes differentiated together (0 = the whole meta-batch at once): the
    # same gradient; one at a time is faster on CPU and holds one episode's
    # activations instead of the meta-batch's (metalearn/accumulate.py). The
    # paper budget runs on a GPU, where one batched graph is the fast one.
    config.episode_group = 0 if budget == "paper" else 1
    # the loop over those groups: "scan" (one copy of the episode graph:
    # ~20-35 s of compile, < 1 GB peak RSS) or "unroll" (32 copies: minutes of
    # compile, 2-4 GB); the same episodes/s within noise (README "Speed and memory")
    config.episode_loop = "scan"
    config.fce = False
    config.fce_steps = 5
    # episodes
    config.train_way = way
    config.train_shot = shot
    config.train_query = 5
    config.meta_batch = 1
    config.test_way = way
    config.test_shot = shot
    config.test_query = 15
    config.test_episodes = 1000 if budget == "paper" else 600
    config.test_seed = 1234
    config.eval_episodes = 100  # periodic, on other test episodes (monitoring only)
    config.eval_chunk = 50  # test episodes per jitted evaluation call
    # optimisation
    config.learning_rate = 1e-3
    config.lr_halve_every = 2000
    config.num_steps = 20000
    config.log_every = 100
    config.eval_every = 2000
    config.checkpoint_every = 1000
    if budget == "smoke":
        config.hidden = 8
        config.depth = 2  # a smaller graph to compile; 7x7x8 embeddings
        config.train_way = config.test_way = 3
        config.train_shot = config.test_shot = 1
        config.train_query = 2
        config.test_query = 2
        config.meta_batch = 2
        config.num_steps = 4
        config.test_episodes = 8
        config.eval_episodes = 8
        config.log_every = 2
        config.eval_every = 4
        config.checkpoint_every = 4
    return config, budget
