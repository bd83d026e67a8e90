"""The round trainers: serial and synchronous (sharded) schedules equal Python
loops; the gathered and blocked-SGD serial trainers equal the dense one."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shared import mesh as mesh_lib
from shared.errors import ConfigError
from tests.transfer.helpers import init_params
from transfer import pathnet, schedules, serial_sgd

SPEC = pathnet.PathNetSpec(
    num_layers=3, num_modules=5, modules_per_layer=2, units=8, input_shape=(12,)
)
LEARNING_RATE = 0.5
OPTIMIZER = optax.sgd(LEARNING_RATE)
S, T, B = 4, 6, 6  # path slots, minibatches per path (2 blocks of 3), batch size


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (S, T, B, 12), dtype=np.uint8)
    labels = (images[..., :6].sum(-1) > images[..., 6:].sum(-1)).astype(np.int32)
    return {"image": jnp.asarray(images), "label": jnp.asarray(labels)}


@functools.cache
def params0():
    return init_params(jax.random.key(0), SPEC)


@functools.cache
def path_grad():
    return jax.jit(jax.value_and_grad(schedules.make_loss(SPEC), has_aux=True))


def sgd(params, grads):
    """NumPy reference of `optax.sgd(LEARNING_RATE)`."""
    return jax.tree.map(
        lambda p, g: np.asarray(p) - LEARNING_RATE * np.asarray(g), params, grads
    )


def python_loop_synchronous(params, paths, batch):
    """Reference: each step, per-path gradients in a Python loop, summed."""
    accs = np.zeros((S, T))
    for t in range(T):
        total = None
        for s in range(S):
            (_, acc), g = path_grad()(
                params, paths[s], batch["image"][s, t], batch["label"][s, t]
            )
            accs[s, t] = acc
            g = jax.tree.map(np.asarray, g)
            total = g if total is None else jax.tree.map(np.add, total, g)
        params = sgd(params, total)
    return params, accs.mean(axis=1)


def python_loop_serial(params, paths, batch):
    fitness = []
    for s in range(S):
        accs = []
        for t in range(T):
            (_, acc), g = path_grad()(
                params, paths[s], batch["image"][s, t], batch["label"][s, t]
            )
            accs.append(float(acc))
            params = sgd(params, g)
        fitness.append(np.mean(accs))
    return params, np.array(fitness)


def trainer_inputs():
    params = params0()
    paths = np.random.default_rng(4).integers(0, 5, (S, 3, 2)).astype(np.int32)
    batch = make_batch()
    frozen = np.zeros((3, 5), bool)
    return params, OPTIMIZER.init(params), frozen, paths, batch


def trained(schedule):
    """The jitted trainer on the shared inputs; synchronous rounds shard their
    path slots over a 4-device mesh (the `data` axis), as `fit` runs them.
    "serial-sgd" is the serial schedule told that the optimizer is plain SGD
    (`transfer.serial_sgd`: layer 0's updates deferred over 2 blocks of 3)."""
    params, opt_state, frozen, paths, batch = trainer_inputs()
    rate = LEARNING_RATE if schedule == "serial-sgd" else None
    schedule = schedule.removesuffix("-sgd")
    train = jax.jit(schedules.make_trainers(SPEC, OPTIMIZER, rate)[schedule])
    if schedule == "serial":
        return train(params, opt_state, frozen, paths, batch["image"], batch["label"])
    mesh = mesh_lib.make_mesh(4)
    sharded = mesh_lib.shard_batch(
        {"paths": paths, "image": batch["image"], "label": batch["label"]}, mesh
    )
    with jax.set_mesh(mesh):
        out = train(
            *mesh_lib.replicate((params, opt_state, frozen), mesh),
            sharded["paths"],
            sharded["image"],
            sharded["label"],
        )
    assert len(out[2].sharding.device_set) == 4  # fitness stays per-device
    return out


@pytest.mark.parametrize(
    "schedule, reference",
    [
        ("synchronous", python_loop_synchronous),
        ("serial", python_loop_serial),
        ("serial-sgd", python_loop_serial),
    ],
    ids=["synchronous-sharded-over-4-devices", "serial", "serial-sgd-blocked"],
)
def test_population_round_equals_python_loop(schedule, reference):
    params, _, _, paths, batch = trainer_inputs()
    got, _, fitness, _ = trained(schedule)
    want, want_fitness = reference(params, paths, batch)
    np.testing.assert_allclose(fitness, want_fitness, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_gathered_serial_equals_dense_serial_with_frozen_modules_and_repeats():
    """SGD takes the gathered serial trainer; the same update written as a
    stateful chain (trace with decay 0, then scale) takes the dense one."""
    params, _, _, paths, batch = trainer_inputs()
    paths = paths.copy()
    paths[0, 1] = [3, 3]  # a repeated gene
    frozen = np.zeros((3, 5), bool)
    frozen[0, paths[1, 0, 0]] = frozen[2, paths[2, 2, 1]] = True
    stateful = optax.chain(optax.trace(decay=0.0), optax.scale(-LEARNING_RATE))
    out = {}
    for name, optimizer, rate in (
        ("gathered", OPTIMIZER, None),
        ("blocked", OPTIMIZER, LEARNING_RATE),
        ("dense", stateful, None),
    ):
        train = jax.jit(schedules.make_trainers(SPEC, optimizer, rate)["serial"])
        out[name] = jax.device_get(
            train(
                params,
                optimizer.init(params),
                frozen,
                paths,
                batch["image"],
                batch["label"],
            )
        )
    dense, _, dense_fitness, _ = out["dense"]
    for name in ("gathered", "blocked"):
        fast, _, fast_fitness, _ = out[name]
        np.testing.assert_allclose(fast_fitness, dense_fitness, atol=1e-6)
        for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(dense), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        for index, layer in enumerate(fast["layers"]):
            for m in np.flatnonzero(frozen[index]):  # frozen: bit-identical
                for leaf in ("w", "b"):
                    np.testing.assert_array_equal(
                        layer[leaf][m], params["layers"][index][leaf][m]
                    )


@pytest.mark.parametrize("largest_block", [1, 2, 6])
def test_serial_sgd_equals_python_loop_for_every_block_size(largest_block):
    """T = 6 in blocks of 1 (no Gram matrix), 2 and 6 (one block: every
    correction reads the strictly lower Gram triangle up to step 5); blocks of 3
    are `test_population_round_equals_python_loop`."""
    params, _, frozen, paths, batch = trainer_inputs()
    train = jax.jit(serial_sgd.make_serial_sgd(SPEC, LEARNING_RATE, largest_block))
    got, (fitness, _) = train(params, frozen, paths, batch["image"], batch["label"])
    want, want_fitness = python_loop_serial(params, paths, batch)
    np.testing.assert_allclose(fitness, want_fitness, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_serial_sgd_three_classes_equals_gathered_trainer():
    """More than two classes take the softmax (not the sigmoid) logit gradient;
    loss and fitness come from the stored logits."""
    spec = pathnet.PathNetSpec(
        num_layers=2,
        num_modules=4,
        modules_per_layer=2,
        units=6,
        input_shape=(12,),
        num_classes=3,
    )
    params = init_params(jax.random.key(0), spec)
    rng = np.random.default_rng(3)
    paths = rng.integers(0, 4, (2, 2, 2)).astype(np.int32)
    images = rng.integers(0, 256, (2, 4, 5, 12), dtype=np.uint8)
    labels = images[..., :3].argmax(-1).astype(np.int32)
    frozen = np.zeros((2, 4), bool)
    gathered = schedules.make_trainers(spec, OPTIMIZER)["serial"]
    want, _, want_fitness, want_loss = jax.jit(gathered)(
        params, OPTIMIZER.init(params), frozen, paths, images, labels
    )
    train = jax.jit(serial_sgd.make_serial_sgd(spec, LEARNING_RATE, 2))
    got, (fitness, loss) = train(params, frozen, paths, images, labels)
    np.testing.assert_allclose(fitness, want_fitness, atol=1e-6)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_serial_sgd_blocks_and_refuses_other_optimizers():
    assert [serial_sgd.block_size(t) for t in (50, 3, 7, 12, 1)] == [5, 3, 1, 4, 1]
    with pytest.raises(ConfigError, match="sgd_rate"):
        schedules.make_trainers(SPEC, optax.sgd(0.1), sgd_rate=0.2)
    with pytest.raises(ConfigError, match="sgd_rate"):
        schedules.make_trainers(SPEC, optax.sgd(0.1, momentum=0.9), sgd_rate=0.1)


def test_winner_keeps_bank_is_the_winners_alone():
    """Tournament = slots (0, 1) and (2, 3) on shared minibatches: the bank after
    the round equals the bank trained along the two winners' paths alone, one
    after the other; each member's fitness is its run from its tournament's
    start; modules on no winner's path are bit-identical to the start."""
    params, opt_state, frozen, paths, batch = trainer_inputs()
    images = np.repeat(np.asarray(batch["image"])[::2], 2, axis=0)
    labels = np.repeat(np.asarray(batch["label"])[::2], 2, axis=0)
    serial = schedules.make_trainers(SPEC, OPTIMIZER, LEARNING_RATE)["serial"]
    alone = jax.jit(serial)
    kept = jax.jit(schedules.keep_winners(serial))
    got, _, fitness, _ = jax.device_get(
        kept(params, opt_state, frozen, paths, images, labels)
    )
    want, winners = params, []
    for k in range(2):
        start, runs = want, []
        for s in (2 * k, 2 * k + 1):
            out = alone(
                start,
                opt_state,
                frozen,
                *(a[s : s + 1] for a in (paths, images, labels)),
            )
            runs.append(jax.device_get(out))
        np.testing.assert_allclose(
            fitness[2 * k : 2 * k + 2], [r[2][0] for r in runs], atol=1e-6
        )
        winner = 0 if runs[0][2][0] >= runs[1][2][0] else 1
        winners.append(2 * k + winner)
        want = runs[winner][0]
    assert fitness[0] != fitness[1] or fitness[2] != fitness[3]  # a real contest
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for index, layer in enumerate(got["layers"]):
        used = set(int(m) for w in winners for m in paths[w, index])
        for m in set(range(SPEC.num_modules)) - used:
            for leaf in ("w", "b"):
                np.testing.assert_array_equal(
                    layer[leaf][m], params["layers"][index][leaf][m]
                )
    # the losers trained modules of their own: their changes are gone
    losers = [w ^ 1 for w in winners]
    assert any(
        set(paths[s, layer]) - set(int(m) for w in winners for m in paths[w, layer])
        for s in losers
        for layer in range(3)
    )
