"""PathNet's tournament-selection GA over paths, pure and jitted.

Fernando et al., "PathNet: Evolution Channels Gradient Descent in Super Neural
Networks", 2017, arXiv:1701.08734, section 2.2 (binary tournament, mutation) and
2.3 (binary MNIST: population 64, T = 50 minibatches of 16, fitness on training
data, 99.8% training accuracy). Reproduces the generation counts of figure 3.

A population is an int array (P, L, N) of paths. One binary tournament: two
paths are each trained for T minibatches (updating the shared module bank), their
fitness is their classification accuracy on the TRAINING minibatches they were
trained on (measured on each minibatch before its update, the "classification
error during training"), the winner's genotype overwrites the loser's and the copy
is mutated: each gene with probability 1/(N L) is shifted by U{-2..2} modulo M.
The winner is left untouched, so the GA is elitist within a tournament.

One call of the step runs a ROUND of K tournaments (K = `tournaments_per_round`,
1 <= K <= P/2) on 2K distinct members drawn by a random permutation; a round counts
as K generations, the paper's unit (one generation = one binary tournament = two
paths x T minibatches), so compute per generation is the same in every schedule.
How a round trains its 2K paths on the shared bank (`schedule`: "serial", the
paper's algorithm at K = 1, or "synchronous", 2K paths in lockstep under `vmap`)
is `transfer.schedules`; read its docstring before comparing generation counts
with the paper's.

`tournament`: "paper" (both members train the shared bank on their own
minibatches and every update stays, the paper's text) or "winner_keeps"
(jsikyoon/pathnet: both members start from the same bank on the SAME minibatches,
those of the tournament's first slot, and only the winner's updates are kept;
`schedules.keep_winners`; serial schedule only).
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
import optax

from shared import draws
from shared.errors import ConfigError
from shared.types import Key
from transfer import pathnet, schedules


@dataclasses.dataclass(frozen=True)
class GAConfig:
    """Static GA hyperparameters (never traced)."""

    population_size: int = 64
    tournaments_per_round: int = 1
    schedule: str = "serial"
    fitness_threshold: float = 0.998
    tournament: str = "paper"

    def __post_init__(self):
        if self.tournament not in ("paper", "winner_keeps"):
            raise ConfigError(
                f"tournament={self.tournament!r}; use 'paper' or 'winner_keeps' "
                "(--config.tournament)."
            )
        if self.tournament == "winner_keeps" and self.schedule != "serial":
            raise ConfigError(
                "tournament='winner_keeps' needs schedule='serial' (--config.schedule; "
                "members of a tournament train one after the other from the same "
                "bank)."
            )


@flax.struct.dataclass
class GAState:
    """Everything a GA run carries between rounds (all arrays: checkpointable).

    Attributes:
      params: {"layers", "head"} module bank and this task's readout.
      opt_state: optimizer state of `params`.
      population: int32 (P, L, N).
      fitness: float32 (P,) last measured fitness; -1 for unevaluated members.
      frozen: bool (L, M) modules whose updates are masked out.
      best_path: int32 (L, N) the best tournament winner of the latest round.
      best_fitness: float32 () its fitness.
      generations: int32 () tournaments run so far.
      solved_at: int32 () generations when a winner first reached the threshold,
        -1 while unsolved; once solved, later steps only count `step`.
      step: int32 () rounds run (fit's step counter).
    """

    params: dict
    opt_state: optax.OptState
    population: jax.Array
    fitness: jax.Array
    frozen: jax.Array
    best_path: jax.Array
    best_fitness: jax.Array
    generations: jax.Array
    solved_at: jax.Array
    step: jax.Array


def random_population(key: Key, size: int, spec: pathnet.PathNetSpec) -> jax.Array:
    """(size, L, N) module ids drawn uniformly from [0, M)."""
    shape = (size, spec.num_layers, spec.modules_per_layer)
    return draws.flat(
        jax.random.randint, key, shape, minval=0, maxval=spec.num_modules
    ).astype(jnp.int32)


def mutate(key: Key, paths: jax.Array, num_modules: int) -> jax.Array:
    """Each gene of (..., L, N) paths, with p = 1/(N L), moves by U{-2..2} mod M."""
    num_layers, per_layer = paths.shape[-2:]
    # One draw for both decisions (each threefry draw is seconds of CPU compile).
    uniform = draws.flat(jax.random.uniform, key, (2, *paths.shape))
    flip = uniform[0] < 1.0 / (num_layers * per_layer)
    shift = jnp.floor(uniform[1] * 5.0).astype(paths.dtype) - 2  # U{-2..2}
    return jnp.where(flip, (paths + shift) % num_modules, paths)


def init_state(
    key: Key,
    params: dict,
    optimizer: optax.GradientTransformation,
    spec: pathnet.PathNetSpec,
    ga: GAConfig,
    frozen: jax.Array | None = None,
) -> GAState:
    """A fresh population and optimizer state around `params`."""
    if frozen is None:
        frozen = jnp.zeros((spec.num_layers, spec.num_modules), bool)
    population = random_population(key, ga.population_size, spec)
    return GAState(
        params=params,
        opt_state=optimizer.init(params),
        population=population,
        fitness=jnp.full((ga.population_size,), -1.0, jnp.float32),
        frozen=frozen,
        best_path=population[0],
        best_fitness=jnp.array(-1.0, jnp.float32),
        generations=jnp.zeros((), jnp.int32),
        solved_at=jnp.array(-1, jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


def select(key: Key, population, members, fitness, num_modules: int):
    """K binary tournaments: the winner's mutated copy replaces the loser.

    Args:
      population: int (P, L, N).
      members: int (K, 2) distinct member indices per tournament.
      fitness: float (K, 2) their fitness; ties go to the first member.

    Returns:
      (population, winners (K,), losers (K,)).
    """
    first_wins = fitness[:, 0] >= fitness[:, 1]
    winners = jnp.where(first_wins, members[:, 0], members[:, 1])
    losers = jnp.where(first_wins, members[:, 1], members[:, 0])
    children = mutate(key, population[winners], num_modules)
    return population.at[losers].set(children), winners, losers


def make_round(
    spec: pathnet.PathNetSpec,
    ga: GAConfig,
    optimizer,
    sgd_rate: float | None = None,
):
    """The fit step `(GAState, batch, key) -> (GAState, metrics)`: one round.

    `batch` holds `image` (2K, T, B, ...) uint8 and `label` (2K, T, B) training
    minibatches (see `transfer.tasks.RoundBatches`). Once solved, a step only
    increments `step` (`lax.cond` skips the work; runners end the phase with
    `fit`'s `stop_fn`). `sgd_rate`: r when `optimizer` is `optax.sgd(r)` (see
    `schedules.make_trainers`).
    """
    num_slots = 2 * ga.tournaments_per_round
    train = schedules.make_trainers(spec, optimizer, sgd_rate)[ga.schedule]
    same_minibatches = ga.tournament == "winner_keeps"
    if same_minibatches:
        train = schedules.keep_winners(train)

    def run(state: GAState, batch, key):
        key_pick, key_mutate = jax.random.split(key)
        # argsort of uniforms: a uniform random permutation in one draw.
        shuffle = jnp.argsort(jax.random.uniform(key_pick, (ga.population_size,)))
        order = shuffle[:num_slots]
        images, labels = batch["image"], batch["label"]
        if same_minibatches:  # both members get their tournament's first slot
            images, labels = (jnp.repeat(a[::2], 2, axis=0) for a in (images, labels))
        params, opt_state, fitness, loss = train(
            state.params,
            state.opt_state,
            state.frozen,
            state.population[order],
            images,
            labels,
        )
        members = order.reshape(-1, 2)
        population, _, losers = select(
            key_mutate,
            state.population,
            members,
            fitness.reshape(-1, 2),
            spec.num_modules,
        )
        all_fitness = state.fitness.at[order].set(fitness)
        top = jnp.argmax(fitness)
        generations = state.generations + ga.tournaments_per_round
        solved = fitness[top] >= ga.fitness_threshold
        new = state.replace(
            params=params,
            opt_state=opt_state,
            population=population,
            fitness=all_fitness.at[losers].set(-1.0),
            best_path=state.population[order[top]],
            best_fitness=fitness[top],
            generations=generations,
            solved_at=jnp.where(solved, generations, -1),
            step=state.step + 1,
        )
        return new, {"loss": loss.mean(), "mean_fitness": fitness.mean()}

    def skip(state: GAState, batch, key):
        del batch, key
        return state.replace(step=state.step + 1), {
            "loss": jnp.zeros(()),
            "mean_fitness": state.best_fitness,
        }

    def step(state: GAState, batch, key):
        state, extra = jax.lax.cond(state.solved_at >= 0, skip, run, state, batch, key)
        return state, {
            "train/loss": extra["loss"],
            "train/mean_fitness": extra["mean_fitness"],
            "train/best_fitness": state.best_fitness,
            "train/generations": state.generations.astype(jnp.float32),
            "train/solved": (state.solved_at >= 0).astype(jnp.float32),
        }

    return step
