r"""The PyTorch per-task loop (as learn2learn runs it) on issue 4's speed protocol.

    .venv-peers/bin/python benchmarks/peers/metalearn_peers.py \
        [--learners=protonet,maml,fomaml] [--seconds=20] [--repeats=3] [--threads=2]

Run with the peers' venv (torch CPU), never imported by the package or tests.
The same workload as `benchmarks/metalearn_throughput.py`: 5-way 1-shot, 15
queries per class, meta-batch 32, Conv-4 (4 x [3x3 conv 64, BatchNorm, ReLU,
2x2 max-pool]) on 28x28 with batch statistics per episode, Adam 1e-3.
  protonet  per episode: support and query embedded as one batch of 80 (BN in
            train mode), squared Euclidean logits to the class means,
            `(loss / 32).backward()`; one Adam step per meta-batch.
  maml      per task: support loss, `torch.autograd.grad(create_graph=True)`,
            one SGD step (lr 0.4), query loss at the adapted weights,
            `(loss / 32).backward()` (second order); `fomaml` the same with
            `create_graph=False` (first order). Transductive BN, as Finn et al.
Images are random uint8 class arrays (1200 x 4 rotations, 20 drawers) sampled
on the host per episode (speed does not depend on pixel values). Warm-up 3
steps, then `--seconds` of steps, `--repeats` times; JSON lines out with the
median episodes/s and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F

WAY, SHOT, QUERY, META_BATCH, SIZE, HIDDEN = 5, 1, 15, 32, 28, 64


def init_conv4(generator: torch.Generator) -> list[torch.Tensor]:
    """Flat list [w1, b1, gamma1, beta1, ..., head_w, head_b] (He-normal convs)."""
    params, channels = [], [1, HIDDEN, HIDDEN, HIDDEN, HIDDEN]
    for i in range(4):
        fan_in = 9 * channels[i]
        w = torch.randn(HIDDEN, channels[i], 3, 3, generator=generator)
        params += [
            w * (2.0 / fan_in) ** 0.5,
            torch.zeros(HIDDEN),
            torch.ones(HIDDEN),
            torch.zeros(HIDDEN),
        ]
    params += [torch.randn(HIDDEN, WAY, generator=generator) / 8.0, torch.zeros(WAY)]
    return [p.requires_grad_() for p in params]


def conv4(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) -> (B, 64); BatchNorm from this batch's statistics."""
    for i in range(4):
        w, b, gamma, beta = params[4 * i : 4 * i + 4]
        x = F.conv2d(x, w, b, padding=1)
        x = F.batch_norm(x, None, None, gamma, beta, training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return x.flatten(1)


def sample_episode(images: torch.Tensor, generator: torch.Generator):
    """(N*K + N*Q, 1, 28, 28) float images, class-major, and the query labels."""
    classes = torch.randperm(images.shape[0], generator=generator)[:WAY]
    drawers = torch.stack(
        [
            torch.randperm(images.shape[1], generator=generator)[: SHOT + QUERY]
            for _ in range(WAY)
        ]
    )
    picked = images[classes[:, None], drawers].float() / 255.0  # (N, K+Q, 28, 28)
    turns = torch.randint(0, 4, (WAY,), generator=generator)
    picked = torch.stack(
        [torch.rot90(p, int(t), (1, 2)) for p, t in zip(picked, turns, strict=True)]
    )
    support = picked[:, :SHOT].reshape(-1, 1, SIZE, SIZE)
    query = picked[:, SHOT:].reshape(-1, 1, SIZE, SIZE)
    support_y = torch.arange(WAY).repeat_interleave(SHOT)
    query_y = torch.arange(WAY).repeat_interleave(QUERY)
    return support, support_y, query, query_y


def protonet_episode(params, support, support_y, query, query_y) -> torch.Tensor:
    features = conv4(params, torch.cat([support, query]))
    support_f, query_f = features[: len(support)], features[len(support) :]
    one_hot = F.one_hot(support_y, WAY).float()
    prototypes = one_hot.T @ support_f / one_hot.sum(0)[:, None]
    logits = -torch.cdist(query_f, prototypes).pow(2)
    return F.cross_entropy(logits, query_y)


def maml_episode(params, support, support_y, query, query_y, first_order: bool):
    def loss(weights, x, y):
        return F.cross_entropy(conv4(weights, x) @ weights[-2] + weights[-1], y)

    grads = torch.autograd.grad(
        loss(params, support, support_y), params, create_graph=not first_order
    )
    adapted = [p - 0.4 * g for p, g in zip(params, grads, strict=True)]
    return loss(adapted, query, query_y)


def make_step(learner: str, params, optimizer, images, generator):
    def step() -> None:
        optimizer.zero_grad()
        for _ in range(META_BATCH):
            episode = sample_episode(images, generator)
            if learner == "protonet":
                loss = protonet_episode(params[:-2], *episode)
            else:
                loss = maml_episode(params, *episode, first_order=learner == "fomaml")
            (loss / META_BATCH).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", default="protonet,maml,fomaml")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for learner in args.learners.split(","):
        if learner not in ("protonet", "maml", "fomaml"):
            parser.error(f"--learners: unknown {learner!r}; use protonet, maml, fomaml")
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (4800, 20, SIZE, SIZE), dtype=torch.uint8)
        params = init_conv4(generator)
        optimizer = torch.optim.Adam(params, lr=1e-3)
        step = make_step(learner, params, optimizer, images, generator)
        start = time.perf_counter()
        for _ in range(3):
            step()
        warmup = time.perf_counter() - start
        rates = []
        for repeat in range(args.repeats):
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                step()
                steps += 1
            rates.append(steps * META_BATCH / (time.perf_counter() - start))
            print(json.dumps({"learner": learner, "repeat": repeat, "eps": rates[-1]}))
        print(
            json.dumps(
                {
                    "peer": f"torch {torch.__version__} per-task loop",
                    "learner": learner,
                    "setting": f"{WAY}w{SHOT}s{QUERY}q",
                    "meta_batch": META_BATCH,
                    "threads": args.threads,
                    "median_episodes_per_second": statistics.median(rates),
                    "warmup_seconds": warmup,
                    # ru_maxrss is the process peak: later learners include earlier
                    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                    / 2**20,
                    "load_average_1min": os.getloadavg()[0],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
