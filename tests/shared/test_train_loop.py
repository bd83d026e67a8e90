"""shared.train_loop.fit: resume, determinism, NaN guard, sharding, recompiles."""

import os
import signal

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from shared import mesh as mesh_lib
from shared.batches import BatchIterator
from shared.errors import CheckpointError, Interrupted, NonFiniteError
from shared.metrics import read_metrics
from shared.train_loop import fit


@flax.struct.dataclass
class State:
    params: dict
    opt_state: optax.OptState
    step: jax.Array


OPTIMIZER = optax.sgd(0.1, momentum=0.9)


def make_state(features=3):
    params = {"w": jnp.zeros((features,)), "b": jnp.zeros(())}
    return State(params, OPTIMIZER.init(params), jnp.zeros((), jnp.int32))


def step_fn(state, batch, key):
    """Least squares with key-dependent noise, so the per-step key matters."""

    def loss_fn(params):
        noise = 0.01 * jax.random.normal(key, batch["y"].shape)
        prediction = batch["x"] @ params["w"] + params["b"]
        return jnp.mean((prediction - batch["y"] - noise) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = OPTIMIZER.update(grads, state.opt_state)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), {
        "train/loss": loss
    }


def make_batches(seed=0, n=64, features=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5][:features]) + 0.3).astype(np.float32)
    return BatchIterator({"x": x, "y": y}, batch_size=8, seed=seed)


def run(workdir, num_steps=20, batches=None, **kwargs):
    kwargs.setdefault("log_every", 3)
    kwargs.setdefault("checkpoint_every", 5)
    return fit(
        kwargs.pop("step", step_fn),
        kwargs.pop("state", make_state()),
        workdir=str(workdir),
        num_steps=num_steps,
        key=jax.random.key(1),
        batches=batches or make_batches(),
        **kwargs,
    )


def assert_trees_equal(a, b):
    chex.assert_trees_all_equal(jax.device_get(a), jax.device_get(b))


def test_trains_and_logs(tmp_path):
    result = run(tmp_path, num_steps=40)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(3, 40, 3)) + [40]
    assert rows[-1]["train/loss"] < 0.1 * rows[0]["train/loss"]
    assert int(result.state.step) == 40
    assert result.train_metrics == {"train/loss": rows[-1]["train/loss"]}


def test_same_seed_same_numbers(tmp_path):
    first = run(tmp_path / "a")
    second = run(tmp_path / "b")
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    assert_trees_equal(first.state.params, second.state.params)


class SignalAt:
    """A batch iterator that sends this process a signal when it reaches `at`."""

    def __init__(self, inner, at, signum=signal.SIGTERM):
        self.inner, self.at, self.signum = inner, at, signum

    def __next__(self):
        if self.inner.position == self.at:
            os.kill(os.getpid(), self.signum)
        return next(self.inner)

    def get_state(self):
        return self.inner.get_state()

    def set_state(self, state):
        self.inner.set_state(state)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_resume_matches_uninterrupted(tmp_path, signum):
    reference = run(tmp_path / "ref", num_steps=20)
    # Interrupted at step 7: not a log, eval or checkpoint boundary.
    with pytest.raises(Interrupted) as info:
        run(tmp_path / "cut", num_steps=20, batches=SignalAt(make_batches(), 6, signum))
    assert info.value.step == 7 and info.value.signum == signum
    resumed = run(tmp_path / "cut", num_steps=20)
    assert resumed.start_step == 7
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "ref")
    assert_trees_equal(resumed.state, reference.state)


def test_resume_after_crash_truncates_rows_past_the_checkpoint(tmp_path):
    reference = run(tmp_path / "ref", num_steps=20)
    run(tmp_path / "cut", num_steps=12)  # "crashed" after step 12 (ckpt 10, 12)
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as f:
        f.write('{"step": 15, "train/loss": 9.0}\n{"step": 1')  # torn last line
    os.utime(tmp_path / "cut" / "metrics.jsonl")
    resumed = run(tmp_path / "cut", num_steps=20)
    assert read_metrics(tmp_path / "cut") == read_metrics(tmp_path / "ref")
    assert_trees_equal(resumed.state, reference.state)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    def exploding(state, batch, key):
        state, metrics = step_fn(state, batch, key)
        loss = jnp.where(state.step >= 8, jnp.nan, metrics["train/loss"])
        return state, {"train/loss": loss}

    with pytest.raises(NonFiniteError, match=r"train/loss is nan at step 8"):
        run(tmp_path, num_steps=20, step=exploding, log_every=4, checkpoint_every=5)
    checkpoints = sorted(os.listdir(tmp_path / "checkpoints"))
    assert checkpoints == ["5"]


def test_eval_hook_runs_every_eval_every_and_at_the_end(tmp_path):
    calls = []

    def eval_fn(state):
        calls.append(int(state.step))
        return {"score": float(state.step)}

    result = run(tmp_path, num_steps=10, eval_fn=eval_fn, eval_every=4)
    assert calls == [4, 8, 10]
    assert result.eval_metrics == {"eval/score": 10.0}
    eval_rows = [r for r in read_metrics(tmp_path) if "eval/score" in r]
    assert [r["step"] for r in eval_rows] == [4, 8, 10]


def test_rerun_of_finished_run_does_no_work(tmp_path):
    first = run(tmp_path, num_steps=10)
    rows = read_metrics(tmp_path)
    again = run(tmp_path, num_steps=10)
    assert again.start_step == 10
    assert again.train_metrics == first.train_metrics  # read back from metrics.jsonl
    assert read_metrics(tmp_path) == rows  # nothing appended


def test_checkpoint_from_another_config_is_refused(tmp_path):
    run(tmp_path, num_steps=5)
    with pytest.raises(CheckpointError, match=r"does not match this config at .*w"):
        run(
            tmp_path,
            num_steps=10,
            state=make_state(features=2),
            batches=make_batches(features=2),
        )


def test_step_compiles_once(tmp_path):
    traced = chex.assert_max_traces(step_fn, n=1)
    run(tmp_path, num_steps=12, step=traced)


def test_weakly_typed_state_compiles_once(tmp_path):
    state = make_state()
    state = state.replace(params={**state.params, "b": jnp.asarray(0.0)})
    assert state.params["b"].weak_type  # a Python scalar through asarray
    traced = chex.assert_max_traces(step_fn, n=1)
    result = run(tmp_path, num_steps=6, step=traced, state=state)
    assert not result.state.params["b"].weak_type


def test_caller_state_survives_donation(tmp_path):
    state = make_state()
    run(tmp_path, num_steps=3, state=state)
    assert float(state.params["b"]) == 0.0  # still readable, not donated


def test_sharded_over_four_devices_equals_one_device(tmp_path):
    assert jax.device_count() == 4
    one = run(tmp_path / "one", mesh=mesh_lib.make_mesh(1))
    four = run(tmp_path / "four", mesh=mesh_lib.make_mesh(4))
    assert len(four.state.params["w"].sharding.device_set) == 4
    chex.assert_trees_all_close(
        jax.device_get(one.state.params),
        jax.device_get(four.state.params),
        rtol=1e-5,
        atol=1e-6,
    )
    rows_one, rows_four = (
        read_metrics(tmp_path / "one"),
        read_metrics(tmp_path / "four"),
    )
    np.testing.assert_allclose(
        [r["train/loss"] for r in rows_one],
        [r["train/loss"] for r in rows_four],
        rtol=1e-5,
    )


def scaled_step(state, batch, key, constants):
    """`step_fn` on targets scaled by a constant passed as an argument."""
    return step_fn(state, {**batch, "y": batch["y"] * constants["scale"]}, key)


def test_constants_reach_the_step_and_phases_compile_once(tmp_path):
    traced = chex.assert_max_traces(scaled_step, n=1)
    one = run(tmp_path / "a", step=traced, constants={"scale": jnp.float32(1.0)})
    two = run(tmp_path / "b", step=traced, constants={"scale": jnp.float32(2.0)})
    plain = run(tmp_path / "c")
    assert_trees_equal(one.state.params, plain.state.params)  # scale 1 == no scale
    # Least squares is linear in the targets, so scaling them scales the offset b.
    assert abs(float(two.state.params["b"])) > 1.5 * abs(float(one.state.params["b"]))


def test_stop_fn_ends_the_run_and_a_rerun_does_no_more_work(tmp_path):
    calls = []

    def stop_fn(step, metrics):
        calls.append((step, sorted(metrics)))
        return step >= 6

    evals = []
    result = run(
        tmp_path,
        num_steps=20,
        stop_fn=stop_fn,
        eval_fn=lambda state: evals.append(int(state.step)) or {"b": 0.0},
        checkpoint_every=0,
    )
    assert [s for s, _ in calls] == [3, 6]
    assert calls[0][1] == ["train/loss"]
    assert (result.final_step, result.stopped_early) == (6, True)
    assert evals == [6]  # evaluated where it stopped
    rows = read_metrics(tmp_path)
    again = run(tmp_path, num_steps=20, stop_fn=stop_fn)
    assert (again.start_step, again.final_step, again.stopped_early) == (6, 6, True)
    assert read_metrics(tmp_path) == rows
    assert len(calls) == 2  # the rerun did not step or ask again


def test_compiler_options_reach_the_compiled_step(tmp_path):
    # an invalid value is refused by XLA's compiler only if fit passes it on
    with pytest.raises(Exception, match="xla_cpu_experimental_ynn_fusion_type"):
        run(
            tmp_path / "bad",
            num_steps=2,
            compiler_options={"xla_cpu_experimental_ynn_fusion_type": "NO_SUCH_TYPE"},
        )
    plain = run(tmp_path / "plain", num_steps=6)
    tuned = run(
        tmp_path / "tuned",
        num_steps=6,
        compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""},
    )
    chex.assert_trees_all_close(
        jax.device_get(plain.state.params),
        jax.device_get(tuned.state.params),
        rtol=1e-6,
    )
