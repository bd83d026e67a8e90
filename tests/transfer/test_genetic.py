"""The GA: mutation statistics, tournaments, the fit round (elitism, frozen
modules, determinism, solved state)."""

import functools

import jax
import numpy as np
import optax
import pytest

from shared import train_loop
from shared.errors import ConfigError
from tests.transfer.helpers import init_params
from transfer import genetic, pathnet, protocol, schedules, tasks
from transfer.configs import binary_mnist

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


def test_winner_keeps_round_uses_the_first_slot_for_both_members():
    """P = 2, one tournament: the bank after the round is the winner's path
    trained alone on slot 0's minibatches (slot 1's are never used), and the
    winner's recorded fitness is that run's."""
    spec = pathnet.PathNetSpec(
        num_layers=2, num_modules=4, modules_per_layer=2, units=6, input_shape=(12,)
    )
    optimizer = optax.sgd(0.5)
    ga = genetic.GAConfig(population_size=2, tournament="winner_keeps")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 4, 5, 12), dtype=np.uint8)
    labels = (images[..., :6].sum(-1) > images[..., 6:].sum(-1)).astype(np.int32)
    params = init_params(jax.random.key(0), spec)
    frozen = np.zeros((2, 4), bool)
    state = genetic.init_state(jax.random.key(1), params, optimizer, spec, ga, frozen)
    step = jax.jit(genetic.make_round(spec, ga, optimizer, 0.5))
    labels[1] = 1 - labels[1]  # slot 1: another task, so using it would show
    new, metrics = jax.device_get(
        step(state, {"image": images, "label": labels}, jax.random.key(2))
    )
    alone = jax.jit(schedules.make_trainers(spec, optimizer, 0.5)["serial"])
    runs = [  # each member trained alone from the start on slot 0's minibatches
        jax.device_get(
            alone(
                params, (), frozen, state.population[m : m + 1], images[:1], labels[:1]
            )
        )
        for m in (0, 1)
    ]
    np.testing.assert_allclose(
        metrics["train/mean_fitness"], np.mean([r[2][0] for r in runs]), atol=1e-6
    )
    winner = int(np.flatnonzero(new.fitness >= 0)[0])
    assert runs[winner][2][0] >= runs[1 - winner][2][0]
    np.testing.assert_allclose(new.fitness[winner], runs[winner][2][0], atol=1e-6)
    for a, b in zip(
        jax.tree.leaves(new.params), jax.tree.leaves(runs[winner][0]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    with pytest.raises(ConfigError, match="schedule='serial'"):
        genetic.GAConfig(schedule="synchronous", tournament="winner_keeps")
