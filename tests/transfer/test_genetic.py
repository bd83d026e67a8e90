"""The GA: mutation statistics, tournaments, vmap == loop, elitism, determinism."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shared import mesh as mesh_lib
from shared import train_loop
from transfer import genetic, pathnet, protocol, tasks
from transfer.configs import binary_mnist

SPEC = pathnet.PathNetSpec(
    num_layers=3, num_modules=5, modules_per_layer=2, units=8, input_shape=(12,)
)
LEARNING_RATE = 0.5
OPTIMIZER = optax.sgd(LEARNING_RATE)
S, T, B = 4, 3, 6  # path slots, minibatches per path, batch size


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (S, T, B, 12), dtype=np.uint8)
    labels = (images[..., :6].sum(-1) > images[..., 6:].sum(-1)).astype(np.int32)
    return {"image": jnp.asarray(images), "label": jnp.asarray(labels)}


@functools.cache
def params0():
    """Random float32 params of SPEC's shapes (NumPy: no compile)."""
    shapes = jax.eval_shape(
        functools.partial(pathnet.init_params, spec=SPEC), jax.random.key(0)
    )
    rng = np.random.default_rng(0)
    return jax.tree.map(
        lambda leaf: rng.uniform(-0.5, 0.5, leaf.shape).astype(np.float32), shapes
    )


TOURNAMENT = dict(  # 6 members, 3 tournaments
    population=np.arange(6 * 3 * 2, dtype=np.int32).reshape(6, 3, 2) % 5,
    members=np.array([[0, 3], [4, 1], [2, 5]]),
    fitness=np.array([[0.2, 0.9], [0.5, 0.5], [0.7, 0.1]], np.float32),
)


@jax.jit
def ga_operators(key, paths, population, members, fitness):
    """mutate(paths), select(...) and the reference children, in ONE compile
    (every threefry draw costs seconds of CPU compile time)."""
    out, winners, losers = genetic.select(key, population, members, fitness, 5)
    children = genetic.mutate(key, population[winners], 5)
    return genetic.mutate(key, paths, 5), (out, winners, losers, children)


def mutate(key, paths):
    return np.asarray(ga_operators(key, paths, **TOURNAMENT)[0])


def test_mutation_rate_shift_and_range():
    out = mutate(jax.random.key(1), np.full((20000, 3, 2), 2, np.int32))
    assert out.min() >= 0 and out.max() < 5
    shift = (out - 2 + 2) % 5 - 2  # in {-2..2}
    changed = shift != 0
    # p = 1/(N L) per gene; a shift of 0 is one of the 5 outcomes.
    want = (1 / 6) * (4 / 5)
    assert abs(changed.mean() - want) < 0.005, changed.mean()
    counts = np.array([(shift == s).sum() for s in (-2, -1, 1, 2)])
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.02), counts


def test_mutation_wraps_modulo_m():
    out = mutate(jax.random.key(2), np.full((20000, 3, 2), 4, np.int32))
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}  # 4+1 -> 0, 4+2 -> 1


def test_tournament_winner_overwrites_loser_and_survives():
    population = TOURNAMENT["population"]
    paths = np.zeros((20000, 3, 2), np.int32)
    _, selected = ga_operators(jax.random.key(3), paths, **TOURNAMENT)
    out, winners, losers, children = jax.device_get(selected)
    np.testing.assert_array_equal(winners, [3, 4, 2])  # tie -> first member
    np.testing.assert_array_equal(losers, [0, 1, 5])
    np.testing.assert_array_equal(out[losers], children)
    np.testing.assert_array_equal(out[winners], population[winners])


@functools.cache
def path_grad():
    return jax.jit(jax.value_and_grad(genetic.make_loss(SPEC), has_aux=True))


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
    path slots over a 4-device mesh (the `data` axis), as `fit` runs them."""
    params, opt_state, frozen, paths, batch = trainer_inputs()
    train = jax.jit(genetic.make_trainers(SPEC, OPTIMIZER)[schedule])
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
    [("synchronous", python_loop_synchronous), ("serial", python_loop_serial)],
    ids=["synchronous-sharded-over-4-devices", "serial"],
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
    for name, optimizer in (("gathered", OPTIMIZER), ("dense", stateful)):
        train = jax.jit(genetic.make_trainers(SPEC, optimizer)["serial"])
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
    (fast, _, fast_fitness, _), (dense, _, dense_fitness, _) = (
        out["gathered"],
        out["dense"],
    )
    np.testing.assert_allclose(fast_fitness, dense_fitness, atol=1e-6)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(dense), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    for index, layer in enumerate(fast["layers"]):
        for m in np.flatnonzero(frozen[index]):  # frozen: bit-identical
            np.testing.assert_array_equal(
                layer["w"][m], params["layers"][index]["w"][m]
            )


@functools.cache
def smoke_round():
    """The smoke config's round and a start state (module 1 of layer 0 frozen).

    `protocol.programs` hands out one step object per setting and `fit` caches its
    compiled step per object, so these tests and tests/transfer/test_train.py
    share a single compiled round.
    """
    config = binary_mnist.get_config("smoke")
    jitted = protocol.programs(config)
    frozen = np.zeros((config.num_layers, config.num_modules), bool)
    frozen[0, 1] = True
    params = jitted.init_params(jax.random.key(5))
    return config, jitted, jitted.init_state(jax.random.key(6), params, frozen)


def run_round(workdir, state, key, seed=0):
    """One more round of `state` through `fit` (the training driver)."""
    config, jitted, _ = smoke_round()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (64, 784), dtype=np.uint8)
    labels = (images[:, :392].sum(-1) > images[:, 392:].sum(-1)).astype(np.int32)
    batches = tasks.RoundBatches(
        images, labels, 4, config.num_minibatches, config.batch_size, seed
    )
    result = train_loop.fit(
        jitted.step,
        state,
        workdir=str(workdir),
        num_steps=int(state.step) + 1,
        key=key,
        batches=batches,
        log_every=1,
        checkpoint_every=0,
        mesh=protocol.make_mesh(config),
        progress=False,
    )
    return result.state, result.train_metrics


def test_round_keeps_winners_counts_generations_and_freezes(tmp_path):
    _, _, state = smoke_round()
    new, metrics = run_round(tmp_path, state, jax.random.key(6))
    state, new = jax.device_get((state, new))  # NumPy indexing: no eager compiles
    assert int(new.generations) == 2 and int(new.step) == 1
    evaluated = np.flatnonzero(np.asarray(new.fitness) >= 0)
    assert len(evaluated) == 2  # winners keep their fitness, children are unevaluated
    for member in evaluated:  # winners' genotypes are untouched
        np.testing.assert_array_equal(new.population[member], state.population[member])
    changed = np.flatnonzero(np.any(new.population != state.population, axis=(1, 2)))
    assert set(changed) <= set(range(8)) - set(evaluated)  # only losers change
    # the best winner is recorded and still in the population (elitism)
    assert any(np.array_equal(new.best_path, p) for p in np.asarray(new.population))
    assert metrics["train/best_fitness"] == float(new.fitness.max())
    old, now = state.params["layers"][0], new.params["layers"][0]
    np.testing.assert_array_equal(old["w"][1], now["w"][1])  # frozen module
    assert not np.array_equal(state.params["head"]["w"], new.params["head"]["w"])


def test_round_is_deterministic(tmp_path):
    _, _, state = smoke_round()
    a, _ = run_round(tmp_path / "a", state, jax.random.key(7))
    b, _ = run_round(tmp_path / "b", state, jax.random.key(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_solved_state_is_left_alone(tmp_path):
    _, _, state = smoke_round()
    solved, _ = run_round(tmp_path / "a", state, jax.random.key(8))
    solved = solved.replace(solved_at=solved.generations)
    later, metrics = run_round(tmp_path / "b", solved, jax.random.key(9), seed=1)
    assert int(later.step) == 2 and int(later.generations) == 2
    for x, y in zip(
        jax.tree.leaves(solved.params), jax.tree.leaves(later.params), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert metrics["train/solved"] == 1.0
