"""IMPALA trainer: runs end to end with real actor processes, checkpoints, resume, faults and signals."""

import csv
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from interp import precision
from interp.agents import AGENTS, load_checkpoint, make_agent
from interp.agents.stepper import step_inputs
from interp.envs import make_env
from interp.errors import UserError
from trainers.actor import Actor, actor_slots
from trainers.config import TrainConfig, apply_preset, configure, cores, spare_cores
from trainers.impala import (
    Trainer,
    TrainerError,
    checkpoint_schedule,
    learner_losses,
    learning_rate,
    resume_config,
    train,
)
from trainers.rollouts import RolloutBuffers, SharedWeights, Wakeup, rollout_fields
from trainers.workers import make_workers

SMALL = dict(env="MiniPong-v0", envs_per_actor=2, batch_size=4, unroll=8, checkpoint_every=400)


def rows(run_dir):
    with open(Path(run_dir) / "metrics.csv") as file:
        return list(csv.DictReader(file))


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                pass
    return found


def test_checkpoint_schedule_is_log_spaced_early_then_regular():
    assert checkpoint_schedule(5000, 1000) == [0, 100, 200, 500, 1000, 2000, 3000, 4000, 5000]
    assert checkpoint_schedule(30_000, 20_000, first=2000) == [0, 2000, 5000, 10_000, 20_000, 30_000]


def test_short_run_with_actor_processes_writes_loadable_checkpoints_and_metrics(tmp_path):
    config = TrainConfig(arch="baseline", steps=1200, out=str(tmp_path / "run"), actors=2, **SMALL)
    final = train(config, progress=False)
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    steps = [int(p.stem.split("_")[1]) for p in checkpoints]
    assert steps[0] == 0 and steps[-1] >= 1200 and len(steps) >= 4 and final == checkpoints[-1]
    for path in checkpoints:
        checkpoint = load_checkpoint(path)
        assert checkpoint.agent.name == "baseline" and checkpoint.meta["step"] == int(path.stem.split("_")[1])
    metrics = rows(tmp_path / "run")
    assert {"step", "wall_time", "sps", "mean_return", "mean_length", "pg_loss", "baseline_loss", "entropy"} <= set(
        metrics[0])
    assert [int(r["step"]) for r in metrics] == sorted({int(r["step"]) for r in metrics})
    assert any(r["mean_return"] for r in metrics)  # episodes ended and were counted
    saved = TrainConfig.from_json(tmp_path / "run" / "config.json")
    assert saved == config
    assert list((tmp_path / "run" / "tensorboard").iterdir())


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_architecture_trains_through_the_same_code(tmp_path, name):
    options = {"mem_len": 4, "chunk_size": 4} if "mem_len" in AGENTS[name].Config.__dataclass_fields__ else {}
    frame_size = 42 if name == "timesformer_joint" else 84
    config = TrainConfig(arch=name, steps=16, out=str(tmp_path / name), actors=0, env="MiniPong-v0",
                         envs_per_actor=2, batch_size=2, unroll=8, agent=options, frame_size=frame_size)
    before = load_checkpoint(train(config, progress=False)).agent
    assert load_checkpoint(tmp_path / name / "checkpoints" / "step_000000000000.pt").agent.name == name
    initial = load_checkpoint(tmp_path / name / "checkpoints" / "step_000000000000.pt").agent
    changed = any(not torch.equal(a, b) for a, b in zip(initial.state_dict().values(), before.state_dict().values(),
                                                        strict=True))
    assert changed  # the learner updated the weights


def test_in_process_mode_is_reproducible(tmp_path):
    finals = []
    for run in ("a", "b"):
        config = TrainConfig(arch="adaptive", steps=48, out=str(tmp_path / run), actors=0, seed=3,
                             agent={"mem_len": 4, "chunk_size": 4}, **{**SMALL, "unroll": 6})
        finals.append(load_checkpoint(train(config, progress=False)).agent.state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_a_moved_run_directory_resumes_where_it_is_now(tmp_path):
    first = tmp_path / "first"
    train(TrainConfig(arch="baseline", steps=64, out=str(first), actors=0, **SMALL), progress=False)
    moved = tmp_path / "moved"
    first.rename(moved)
    train(resume_config(moved, steps=128), resume=True, progress=False)
    assert not first.exists() and int(rows(moved)[-1]["step"]) == 128
    assert TrainConfig.from_json(moved / "config.json").out == str(moved)


def test_learner_threads_apply_to_the_learner_only_while_it_trains(tmp_path):
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    config = TrainConfig(arch="baseline", steps=64, out=str(tmp_path / "run"), actors=0, learner_threads=wanted,
                         **SMALL)
    trainer = Trainer(config, progress=False)
    seen = []
    trainer.agent.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    trainer.run()
    assert seen and set(seen) == {wanted} and torch.get_num_threads() == before


def test_resume_continues_step_count_and_optimizer(tmp_path):
    out = str(tmp_path / "run")
    train(TrainConfig(arch="baseline", steps=256, out=out, actors=0, **SMALL), progress=False)
    state = torch.load(tmp_path / "run" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 256 and state["optimizer"]["state"]
    trainer = Trainer(TrainConfig(arch="baseline", steps=512, out=out, actors=0, **SMALL), resume=True,
                      progress=False)
    restored = []
    trainer.agent.register_forward_pre_hook(lambda *_: restored.append(
        (trainer.step, trainer.optimizer.state_dict()["state"][0]["mean_square"].clone())) if not restored else None)
    trainer.run()
    assert restored[0][0] == 256 and torch.equal(restored[0][1], state["optimizer"]["state"][0]["mean_square"])
    steps = [int(r["step"]) for r in rows(out)]
    assert steps[0] == 32 and steps[-1] == 512 and steps == sorted(set(steps))
    with pytest.raises(UserError, match="already holds a run"):
        Trainer(TrainConfig(arch="baseline", steps=512, out=out, actors=0, **SMALL), progress=False).run()


def test_an_agent_option_given_at_its_default_is_no_change_on_resume(tmp_path):
    """Runs written with no agent options before MiniPong's default ``scale_frames=false``: the baseline's (false is
    its own default) resumes under the new default, atarinet's (TorchBeast's network divides by 255) is refused."""
    for arch, refused in (("baseline", False), ("atarinet", True)):
        out = str(tmp_path / arch)
        train(TrainConfig(arch=arch, steps=64, out=out, actors=0, optimizer="rmsprop_torch", **SMALL), progress=False)
        config = configure(arch, out, {"steps": 128, "actors": 0, **SMALL})
        assert config.agent == {"scale_frames": False}
        if refused:
            with pytest.raises(UserError, match=re.escape("its agent cannot change on --resume (agent: {} in the run, "
                                                          "{'scale_frames': False} now)")):
                train(config, resume=True, progress=False)
        else:
            train(config, resume=True, progress=False)
            assert int(rows(out)[-1]["step"]) == 128


@pytest.mark.parametrize("schedule, last_factor", [("constant", 1.0), ("linear", 1 - 224 / 256)])
def test_the_linear_schedule_anneals_the_learning_rate_to_zero_at_the_last_step(tmp_path, schedule, last_factor):
    out = tmp_path / "run"
    train(TrainConfig(arch="baseline", steps=256, lr=6e-4, lr_schedule=schedule, out=str(out), actors=0, **SMALL),
          progress=False)
    state = torch.load(out / "trainer_state.pt", weights_only=True)  # the last update starts at step 224
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(6e-4 * last_factor, rel=1e-9)
    with pytest.raises(UserError, match="lr_schedule must be one of constant, linear"):
        TrainConfig(arch="baseline", lr_schedule="cosine")


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_the_warm_up_raises_the_learning_rate_linearly_to_the_schedule(schedule):
    config = TrainConfig(arch="baseline", steps=10_000, lr=1e-3, lr_schedule=schedule, lr_warmup=1_000)
    plain = replace(config, lr_warmup=0)
    assert learning_rate(config, 0) == pytest.approx(1e-3 / 1_000, rel=1e-12)
    assert learning_rate(config, 499) == pytest.approx(learning_rate(plain, 499) / 2, rel=1e-12)
    assert [learning_rate(config, s) for s in (999, 5_000)] == [learning_rate(plain, s) for s in (999, 5_000)]
    assert learning_rate(plain, 0) == 1e-3
    with pytest.raises(UserError, match="out of range: lr-warmup -1"):
        TrainConfig(arch="baseline", lr_warmup=-1)


def test_until_return_stops_at_the_return_and_a_finished_run_resumes_to_nothing(tmp_path):
    out = tmp_path / "run"
    # one point per episode: 100 episodes end within a few thousand steps, each returning -1 or +1
    config = TrainConfig(arch="baseline", steps=100_000, out=str(out), actors=0, until_return=-1.0,
                         env_options={"points": 1}, **{**SMALL, "envs_per_actor": 4, "batch_size": 8, "unroll": 20})
    final = train(config, progress=False)
    table = rows(out)
    assert int(table[-1]["step"]) < 100_000 and float(table[-1]["mean_return"]) >= -1.0
    assert load_checkpoint(final).meta["step"] == int(table[-1]["step"])
    def files():  # every file of the run but the lock a trainer takes
        return {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.name != ".lock"}

    written = files()
    assert train(resume_config(out, steps=200_000), resume=True, progress=False) == final  # the target is reached
    assert train(resume_config(out, steps=64, until_return=None), resume=True, progress=False) == final  # below
    assert files() == written  # nothing rewritten
    with pytest.raises(UserError, match="until-return must be a finite number"):
        TrainConfig(until_return=float("nan"))


def _kill_an_actor_once_training(out: Path) -> list[int]:
    """Kill one actor as soon as the learner has written its first metrics row (training under way, actors up);
    returns the list that receives the killed actor's pid."""
    import multiprocessing

    killed = []

    def kill():
        deadline = time.monotonic() + 120  # on a loaded machine the actors may be slow to start
        while time.monotonic() < deadline:
            actors = [c for c in multiprocessing.active_children() if c.name.startswith("actor-")]
            if actors and (out / "metrics.csv").exists() and len(rows(out)) >= 1:
                os.kill(actors[0].pid, signal.SIGKILL)
                killed.append(actors[0].pid)
                return
            time.sleep(0.05)

    threading.Thread(target=kill, daemon=True).start()
    return killed


def test_killed_actor_is_restarted(tmp_path, capsys):
    # long enough that the kill (at the first metrics row) cannot come after the end on a fast machine
    config = TrainConfig(arch="baseline", steps=9600, out=str(tmp_path / "run"), actors=2, **SMALL)
    killed = _kill_an_actor_once_training(tmp_path / "run")
    train(config, progress=False)
    assert killed, "no actor was killed"
    assert "died (exit code -9); restarting it (1/3)" in capsys.readouterr().out
    steps = [int(r["step"]) for r in rows(tmp_path / "run")]
    assert steps[-1] >= 9600


def test_killed_actor_without_restarts_stops_with_a_clear_error(tmp_path):
    config = TrainConfig(arch="baseline", steps=10**7, out=str(tmp_path / "run"), actors=2, max_actor_restarts=0,
                         **SMALL)
    _kill_an_actor_once_training(tmp_path / "run")
    started = time.monotonic()
    with pytest.raises(TrainerError, match=r"actor \d died \(exit code -9\)"):
        train(config, progress=False)
    assert time.monotonic() - started < 60
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_000000000000.pt")


def test_a_diverging_training_stops_with_one_line_and_saves_the_last_finite_weights(tmp_path):
    # rmsprop_tf1 without a clip at this learning rate: the second update's loss is inf (the actors would then
    # stop on NaN probabilities, a torch traceback)
    config = TrainConfig(arch="baseline", steps=3200, out=str(tmp_path / "run"), actors=0, seed=0, lr=1e6,
                         grad_norm_clip=1e30, precision="fp32", **SMALL)
    with pytest.raises(TrainerError, match=r"^the training diverged at step \d+: total loss (inf|nan)") as error:
        train(config, progress=False)
    assert "\n" not in str(error.value)
    final = sorted((tmp_path / "run" / "checkpoints").glob("step_*.pt"))[-1]
    assert all(torch.isfinite(weight).all() for weight in load_checkpoint(final).agent.state_dict().values())


def _start_cli_training(out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli", "train", "--arch", "baseline", "--env", "MiniPong-v0",
               "--steps", "10000000", "--out", str(out), "--actors", "2", "--envs-per-actor", "2",
               "--batch-size", "4", "--unroll", "8", "--checkpoint-every", "400"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_metrics(out: Path, rows_wanted: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "metrics.csv").exists() and len(rows(out)) >= rows_wanted:
            return
        time.sleep(0.2)
    raise AssertionError("training did not start")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_final_checkpoint_and_exits_cleanly(tmp_path, signum):
    out = tmp_path / f"run_{signum}"
    process = _start_cli_training(out)
    _wait_for_metrics(out, 10)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    last_step = int(rows(out)[-1]["step"])
    final = out / "checkpoints" / f"step_{last_step:012d}.pt"
    assert final.exists() and load_checkpoint(final).meta["step"] == last_step
    time.sleep(0.5)
    assert processes_mentioning(str(out)) == []  # no actor left behind


def test_sigkill_leaves_every_checkpoint_loadable_and_no_orphans(tmp_path):
    out = tmp_path / "run"
    process = _start_cli_training(out)
    _wait_for_metrics(out, 40)
    process.kill()
    process.wait(timeout=30)
    time.sleep(1.0)
    assert processes_mentioning(str(out)) == []
    checkpoints = list((out / "checkpoints").glob("step_*.pt"))
    assert len(checkpoints) >= 3
    for path in checkpoints:
        load_checkpoint(path)
    assert os.listdir("/dev/shm") == [] or not any(str(out.name) in n for n in os.listdir("/dev/shm"))


def _seconds_waited(wakeup: Wakeup, timeout: float, report) -> None:
    start = time.monotonic()
    wakeup.wait(timeout)
    report.put(time.monotonic() - start)


def test_a_wakeup_rung_in_another_process_ends_a_wait_and_clear_forgets_earlier_rings():
    context = multiprocessing.get_context("fork")
    wakeup, waited = Wakeup(context), context.Queue()
    sleeper = context.Process(target=_seconds_waited, args=(wakeup, 120.0, waited))
    sleeper.start()
    time.sleep(0.2)
    wakeup.ring()
    assert waited.get(timeout=60) < 60  # woken by the ring, not by its timeout
    sleeper.join()
    wakeup.ring()
    wakeup.ring()
    _seconds_waited(wakeup, 120.0, waited)
    assert waited.get() < 60  # a ring before the wait ends it at once
    wakeup.clear()
    _seconds_waited(wakeup, 0.2, waited)
    assert waited.get() >= 0.2  # the other ring was forgotten: the wait lasts its timeout


def test_the_learner_wakes_the_actor_whose_slots_it_frees(tmp_path):
    config = TrainConfig(arch="baseline", out=str(tmp_path), actors=2, **SMALL)
    agent = make_agent("baseline", (1, 84, 84), 3)
    workers = make_workers(config, agent, (1, 84, 84), 3, np.random.default_rng(0))
    try:
        for slot in actor_slots(config, workers.buffers, 1)[:config.slots_per_batch]:
            workers.buffers.mark_full(slot)
        batch, _ = workers.next_batch(lambda: False)
        assert batch is not None
        waited = multiprocessing.get_context("fork").SimpleQueue()
        _seconds_waited(workers.freed[1], 120.0, waited)
        _seconds_waited(workers.freed[0], 0.2, waited)
        assert waited.get() < 60 and waited.get() >= 0.2  # actor 1's slots were freed, actor 0's were not
    finally:
        workers.shutdown()


def test_default_actors_follow_the_architecture_and_the_cores(tmp_path):
    """The baseline's actors mostly wait for their games, so one more than the cores; agents with heavier forward
    passes get one per core the learner leaves. Given counts are kept, and the resolved count is what is saved."""
    light, heavy = TrainConfig(arch="baseline"), TrainConfig(arch="timesformer_divided")
    assert light.actors == cores() + 1
    assert heavy.actors == spare_cores(heavy) == max(1, cores() - heavy.learner_threads)
    assert TrainConfig(arch="baseline", actors=0).actors == 0
    (tmp_path / "config.json").write_text(light.to_json())
    assert TrainConfig.from_json(tmp_path / "config.json") == light


@pytest.mark.parametrize("extra_actors, groups", [(0, 2), (1, 1)])
def test_an_actor_splits_its_games_in_two_groups_only_with_a_core_of_its_own(extra_actors, groups):
    layout = TrainConfig(arch="baseline", env="ALE/Pong-v5", learner_threads=1)
    config = replace(layout, actors=spare_cores(layout) + extra_actors, envs_per_actor=4, batch_size=4, unroll=3)
    agent = make_agent("baseline", (4, 84, 84), 6)
    buffers = RolloutBuffers(rollout_fields(agent, (4, 84, 84), 6), (), 1, config.unroll, config.envs_per_actor)
    weights = SharedWeights(agent)
    weights.publish(agent)
    actor = Actor(config, 0, buffers, weights, seed=0)
    try:
        assert len(actor.groups) == groups
        assert sorted(c for group in actor.groups for c in range(4)[group.columns]) == [0, 1, 2, 3]
        actor.fill(0)
    finally:
        actor.close()
    batch, _ = buffers.take([0])
    assert batch["episode_step"][-1].tolist() == [3, 3, 3, 3]  # every game stepped through the whole rollout
    assert batch["frame"][-1].flatten(1).float().std(dim=1).min() > 0


def test_thesis_preset_sets_appendix_a_values():
    config = apply_preset(TrainConfig(arch="timesformer_joint"), "thesis")
    assert (config.unroll, config.batch_size, config.frame_size, config.agent["chunk_size"]) == (239, 4, 42, 10)
    assert config.batch_size % config.envs_per_actor == 0


def one_rollout_batch(config: TrainConfig, agent) -> tuple[dict, tuple]:
    """A real batch: the in-process actor's fourth rollout of MiniPong (the state built over three before it)."""
    obs_shape = (4, config.frame_size, config.frame_size)
    buffers = RolloutBuffers(rollout_fields(agent, obs_shape, 3), agent.initial_state(config.envs_per_actor), 1,
                             config.unroll, config.envs_per_actor)
    weights = SharedWeights(agent)
    weights.publish(agent)
    actor = Actor(config, 0, buffers, weights, seed=0)
    for _ in range(4):
        buffers.status[0] = 0
        actor.fill(0)
    actor.close()
    return buffers.take([0])


@pytest.mark.parametrize("name", ["baseline", "mott", "timesformer_divided"])
def test_a_bf16_update_is_close_to_float32(name):
    """bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2%) in every product of the forward and backward
    passes; summed over thousands of terms, the outputs move by a few tenths of a percent. So each loss, computed in
    float32 from them, is within 2% of the losses' scale, and the gradient's direction within cosine 0.99 and its
    norm within 5% (measured: cosine >= 0.9988, norm within 1.3%, on these agents and the adaptive one)."""
    torch.manual_seed(0)
    options = {"mem_len": 4} if name == "timesformer_divided" else {}
    config = TrainConfig(arch=name, env="MiniPong-v0", envs_per_actor=4, batch_size=4, unroll=8, actors=0,
                         agent=options, precision="fp32")
    agent = make_agent(name, (4, 84, 84), 3, **options)
    batch, state = one_rollout_batch(config, agent)
    results = {}
    for chosen in ("fp32", "bf16"):
        agent.zero_grad()
        losses = learner_losses(agent, batch, state, config, chosen)
        losses["total_loss"].backward()
        gradient = torch.cat([p.grad.flatten() for p in agent.parameters() if p.grad is not None])
        results[chosen] = ({key: value.item() for key, value in losses.items()}, gradient)
    (full, full_gradient), (half, half_gradient) = results["fp32"], results["bf16"]
    assert all(torch.isfinite(torch.tensor(list(half.values())))) and torch.isfinite(half_gradient).all()
    scale = abs(full["pg_loss"]) + abs(full["baseline_loss"]) + config.entropy_cost * abs(full["entropy_loss"])
    for key in ("total_loss", "pg_loss", "baseline_loss"):
        assert abs(half[key] - full[key]) <= 0.02 * scale, (key, half[key], full[key])
    assert half["entropy"] == pytest.approx(full["entropy"], rel=0.01)
    assert torch.nn.functional.cosine_similarity(half_gradient, full_gradient, dim=0) > 0.99
    assert half_gradient.norm() / full_gradient.norm() == pytest.approx(1.0, abs=0.05)


def test_precision_is_resolved_recorded_and_checkpoints_stay_float32(tmp_path):
    config = TrainConfig(arch="baseline", steps=64, out=str(tmp_path / "run"), actors=0, precision="bf16", **SMALL)
    final = load_checkpoint(train(config, progress=False))
    assert final.meta["precision"] == "bf16" and final.meta["config"]["precision"] == "bf16"
    assert all(tensor.dtype == torch.float32 for tensor in final.agent.state_dict().values())
    assert TrainConfig.from_json(tmp_path / "run" / "config.json").precision == "bf16"
    assert all(float(r["grad_norm"]) == float(r["grad_norm"]) for r in rows(tmp_path / "run"))  # no NaN
    with pytest.raises(UserError, match="precision must be one of"):
        TrainConfig(precision="fp8")


def test_auto_precision_follows_the_processor(tmp_path):
    native, emulated = tmp_path / "native", tmp_path / "emulated"
    native.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    emulated.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512bw\n")
    assert precision.cpu_has_native_bf16(native) and not precision.cpu_has_native_bf16(emulated)
    assert precision.resolve("auto", "cpu") == ("bf16" if precision.cpu_has_native_bf16() else "fp32")
    assert precision.resolve("fp32", "cpu") == "fp32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_learner_trains_in_bf16_or_tf32(tmp_path):
    config = TrainConfig(arch="mott", steps=64, out=str(tmp_path / "run"), actors=0, device="cuda", **SMALL)
    final = load_checkpoint(train(config, progress=False))
    assert final.meta["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert all(float(r["grad_norm"]) == float(r["grad_norm"]) for r in rows(tmp_path / "run"))
    assert not torch.backends.cuda.matmul.allow_tf32  # restored after the run


def pong_frames(count: int = 32) -> torch.Tensor:
    """ALE Pong frames of a random policy's play, [1, count, 4, 84, 84]."""
    env = make_env("ALE/Pong-v5", seed=0)
    obs, _ = env.reset(seed=0)
    generator, kept = np.random.default_rng(0), []
    for step in range(8 * count):
        obs, *_ = env.step(int(generator.integers(6)))
        if step % 8 == 0:
            kept.append(obs)
    return torch.from_numpy(np.stack(kept))[None]


def test_an_environment_gets_the_settings_that_learn_there_unless_flags_say_otherwise():
    pong = configure("baseline", "run", {"env": "ALE/Pong-v5"})
    preset = configure("baseline", "run", {"preset": "pong"})
    assert (pong.optimizer, pong.rmsprop_eps, pong.agent) == (preset.optimizer, preset.rmsprop_eps, preset.agent) == (
        "rmsprop_tf1", 1e-5, {"scale_frames": True, "init": "orthogonal"})
    mine = configure("baseline", "run", {"env": "ALE/Pong-v5", "rmsprop_eps": 0.01, "agent": {"init": "torch"}})
    assert mine.rmsprop_eps == 0.01 and mine.agent == {"scale_frames": True, "init": "torch"}
    assert configure("mott", "run", {}).optimizer == "rmsprop_torch"  # MiniPong's
    assert configure("atarinet", "run", {}).agent == {"scale_frames": False}  # and frames as they are
    assert configure("mott", "run", {"preset": "monobeast"}).lr == 4.8e-4  # a preset still wins over them


@pytest.mark.parametrize("preset", ["", "pong"])
def test_on_ale_pong_every_layer_stays_alive_and_depends_on_the_frame(tmp_path, preset):
    """The first convolution of the baseline used to die within 10k steps on ALE Pong (torch's RMSprop: its first
    updates are ~10x the learning rate, all of a filter's weights the same way on Pong's grey background); at the
    defaults (``interp train --arch baseline --env ALE/Pong-v5``) and with the preset it stays alive."""
    given = {"env": "ALE/Pong-v5", "steps": 3200, "actors": 1, "checkpoint_every": 10**6, "preset": preset}
    config = configure("baseline", str(tmp_path / "run"), given)
    agent = load_checkpoint(train(config, progress=False)).agent
    activations = {}
    for name, module in agent.named_modules():
        if isinstance(module, torch.nn.ReLU):
            module.register_forward_hook(lambda m, i, output, name=name: activations.__setitem__(name, output))
    frames = pong_frames()
    with torch.no_grad():
        outputs, _ = agent(step_inputs(frames), ())
    assert len(activations) == 4
    for name, output in activations.items():
        units = output.flatten(1)  # [frames, units]
        active = (units > 0).float().mean()
        varying = (units.std(dim=0) > 1e-6 * units.abs().mean().clamp(min=1e-12)).float().mean()
        assert active > 0.1 and varying > 0.1, (name, float(active), float(varying))
    assert outputs["policy_logits"][0].std(dim=0).max() > 0  # the policy depends on the frame
