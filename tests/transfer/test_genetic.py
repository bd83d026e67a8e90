"""The GA: mutation statistics, tournaments, vmap == loop, elitism, determinism."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transfer import genetic, pathnet

SPEC = pathnet.PathNetSpec(
    num_layers=3, num_modules=5, modules_per_layer=2, units=8, input_shape=(12,)
)
OPTIMIZER = optax.sgd(0.5)
S, T, B = 4, 3, 6  # path slots, minibatches per path, batch size


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (S, T, B, 12), dtype=np.uint8)
    labels = (images[..., :6].sum(-1) > images[..., 6:].sum(-1)).astype(np.int32)
    return {"image": jnp.asarray(images), "label": jnp.asarray(labels)}


@functools.cache
def params0():
    return jax.jit(pathnet.init_params, static_argnums=1)(jax.random.key(0), SPEC)


def test_mutation_rate_shift_and_range():
    paths = jnp.zeros((20000, 3, 2), jnp.int32) + 2
    out = np.asarray(
        jax.jit(genetic.mutate, static_argnums=2)(jax.random.key(1), paths, 5)
    )
    assert out.min() >= 0 and out.max() < 5
    shift = (out - 2 + 2) % 5 - 2  # in {-2..2}
    changed = shift != 0
    # p = 1/(N L) per gene; a shift of 0 is one of the 5 outcomes.
    want = (1 / 6) * (4 / 5)
    assert abs(changed.mean() - want) < 0.005, changed.mean()
    counts = np.array([(shift == s).sum() for s in (-2, -1, 1, 2)])
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.02), counts


def test_mutation_wraps_modulo_m():
    paths = jnp.full((5000, 3, 2), 4, jnp.int32)
    out = np.asarray(
        jax.jit(genetic.mutate, static_argnums=2)(jax.random.key(2), paths, 5)
    )
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}  # 4+1 -> 0, 4+2 -> 1


@jax.jit
def select_and_mutate(key, population, members, fitness):
    out, winners, losers = genetic.select(key, population, members, fitness, 5)
    return out, winners, losers, genetic.mutate(key, population[winners], 5)


def test_tournament_winner_overwrites_loser_and_survives():
    population = jnp.arange(6 * 3 * 2, dtype=jnp.int32).reshape(6, 3, 2) % 5
    members = jnp.array([[0, 3], [4, 1], [2, 5]])
    fitness = jnp.array([[0.2, 0.9], [0.5, 0.5], [0.7, 0.1]])
    key = jax.random.key(3)
    out, winners, losers, children = select_and_mutate(
        key, population, members, fitness
    )
    np.testing.assert_array_equal(winners, [3, 4, 2])  # tie -> first member
    np.testing.assert_array_equal(losers, [0, 1, 5])
    np.testing.assert_array_equal(out[losers], children)
    np.testing.assert_array_equal(out[winners], population[winners])


def python_loop_synchronous(params, opt_state, paths, batch):
    """Reference: each step, per-path gradients in a Python loop, summed."""
    loss_fn = genetic.make_loss(SPEC)
    grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    accs = np.zeros((S, T))
    for t in range(T):
        total = None
        for s in range(S):
            (_, acc), g = grad(
                params, paths[s], batch["image"][s, t], batch["label"][s, t]
            )
            accs[s, t] = acc
            total = g if total is None else jax.tree.map(jnp.add, total, g)
        updates, opt_state = OPTIMIZER.update(total, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params, accs.mean(axis=1)


def python_loop_serial(params, opt_state, paths, batch):
    loss_fn = genetic.make_loss(SPEC)
    grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    fitness = []
    for s in range(S):
        accs = []
        for t in range(T):
            (_, acc), g = grad(
                params, paths[s], batch["image"][s, t], batch["label"][s, t]
            )
            accs.append(float(acc))
            updates, opt_state = OPTIMIZER.update(g, opt_state, params)
            params = optax.apply_updates(params, updates)
        fitness.append(np.mean(accs))
    return params, np.array(fitness)


@pytest.mark.parametrize(
    "schedule, reference",
    [("synchronous", python_loop_synchronous), ("serial", python_loop_serial)],
)
def test_vmapped_or_scanned_population_equals_python_loop(schedule, reference):
    params = params0()
    opt_state = OPTIMIZER.init(params)
    paths = genetic.random_population(jax.random.key(4), S, SPEC)
    batch = make_batch()
    frozen = jnp.zeros((3, 5), bool)
    train = jax.jit(genetic.make_trainers(SPEC, OPTIMIZER)[schedule])
    got, _, fitness, _ = train(
        params, opt_state, frozen, paths, batch["image"], batch["label"]
    )
    want, want_fitness = reference(params, opt_state, paths, batch)
    np.testing.assert_allclose(fitness, want_fitness, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@functools.cache
def round_setup():
    ga = genetic.GAConfig(8, 2, "synchronous", 0.999)
    step = jax.jit(genetic.make_round(SPEC, ga, OPTIMIZER))
    frozen = jnp.zeros((3, 5), bool).at[0, 1].set(True)
    state = genetic.init_state(
        jax.random.key(5), params0(), OPTIMIZER, SPEC, ga, frozen
    )
    return step, state


def test_round_keeps_winners_counts_generations_and_freezes():
    step, state = round_setup()
    new, metrics = step(state, make_batch(), jax.random.key(6))
    assert int(new.generations) == 2 and int(new.step) == 1
    evaluated = np.flatnonzero(np.asarray(new.fitness) >= 0)
    assert len(evaluated) == 2  # winners keep their fitness, children are unevaluated
    for member in evaluated:  # winners' genotypes are untouched
        np.testing.assert_array_equal(new.population[member], state.population[member])
    # the best winner is recorded and still in the population (elitism)
    assert any(np.array_equal(new.best_path, p) for p in np.asarray(new.population))
    assert float(metrics["train/best_fitness"]) == float(new.fitness.max())
    old, now = state.params["layers"][0], new.params["layers"][0]
    np.testing.assert_array_equal(old["w"][1], now["w"][1])  # frozen module
    assert not np.array_equal(state.params["head"]["w"], new.params["head"]["w"])


def test_round_is_deterministic():
    step, state = round_setup()
    a, _ = step(state, make_batch(), jax.random.key(7))
    b, _ = step(state, make_batch(), jax.random.key(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_solved_state_is_left_alone():
    step, state = round_setup()
    solved, _ = step(state, make_batch(), jax.random.key(8))
    solved = solved.replace(solved_at=solved.generations)
    later, metrics = step(solved, make_batch(1), jax.random.key(9))
    assert int(later.step) == 2 and int(later.generations) == 2
    for x, y in zip(
        jax.tree.leaves(solved.params), jax.tree.leaves(later.params), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert float(metrics["train/solved"]) == 1.0


def test_population_sharded_over_devices_equals_one_device():
    """Synchronous rounds shard path slots over the mesh's `data` axis."""
    from shared import mesh as mesh_lib

    params = params0()
    opt_state = OPTIMIZER.init(params)
    paths = genetic.random_population(jax.random.key(4), S, SPEC)
    batch = make_batch()
    frozen = jnp.zeros((3, 5), bool)
    train = jax.jit(genetic.make_trainers(SPEC, OPTIMIZER)["synchronous"])
    want = train(params, opt_state, frozen, paths, batch["image"], batch["label"])
    mesh = mesh_lib.make_mesh(4)
    sharded = mesh_lib.shard_batch(
        {"paths": paths, "image": batch["image"], "label": batch["label"]}, mesh
    )
    with jax.set_mesh(mesh):
        got = train(
            mesh_lib.replicate(params, mesh),
            mesh_lib.replicate(opt_state, mesh),
            mesh_lib.replicate(frozen, mesh),
            sharded["paths"],
            sharded["image"],
            sharded["label"],
        )
    assert len(got[2].sharding.device_set) == 4
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
