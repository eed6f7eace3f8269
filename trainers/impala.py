"""IMPALA learner: batches actors' rollouts, applies V-trace, and writes checkpoints across training.

Read top to bottom: the loss, the checkpoint schedule, then :class:`Trainer` (set-up, the loop, shutdown).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import multiprocessing as mp
import random
import signal
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from interp import precision
from interp.agents import make_agent, save_checkpoint
from interp.envs import make_env
from interp.errors import UserError
from interp.files import atomic_path
from trainers import vtrace
from trainers.actor import Actor, RestartBudget, TrainerError, actor_slots, run_actor_process
from trainers.config import TrainConfig
from trainers.optim import RMSpropTF
from trainers.rollouts import RolloutBuffers, SharedWeights, rollout_fields

ACTOR_POLL_SECONDS = 0.5  # how often the learner checks that its actors are alive while it waits


def impala_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                config: TrainConfig) -> dict[str, torch.Tensor]:
    """V-trace actor-critic loss, in float32, of the learner's ``outputs`` on a batch ``[T + 1, B, ...]``
    (frame-aligned, see :mod:`trainers.rollouts`).

    Transition ``t`` goes from frame ``t`` (where the action was taken) to frame ``t + 1`` (which brings its reward).
    Steps into a reset frame are the vector environments' dummy steps: no reward, no bootstrap, no loss.
    """
    rewards = batch["reward"][1:]
    if config.reward_clip:
        rewards = rewards.clamp(-config.reward_clip, config.reward_clip)
    ends = batch["terminal"][1:] | batch["done"][1:]
    discounts = (~ends).float() * config.discounting
    mask = (~batch["done"][1:]).float()
    all_logits, all_values = outputs["policy_logits"].float(), outputs["baseline"].float()
    logits, values = all_logits[:-1], all_values[:-1]
    returns = vtrace.from_logits(
        behavior_policy_logits=batch["policy_logits"][:-1], target_policy_logits=logits, actions=batch["action"][:-1],
        discounts=discounts, rewards=rewards, values=values.detach(), bootstrap_value=all_values[-1].detach(),
    )
    log_probs = vtrace.action_log_probs(logits, batch["action"][:-1])
    pg_loss = -(log_probs * returns.pg_advantages * mask).sum()
    baseline_loss = 0.5 * (((returns.vs - values) ** 2) * mask).sum()
    policy = F.softmax(logits, dim=-1)
    entropy = -(policy * F.log_softmax(logits, dim=-1)).sum(-1)
    entropy_loss = -(entropy * mask).sum()
    total = pg_loss + config.baseline_cost * baseline_loss + config.entropy_cost * entropy_loss
    return {"total_loss": total, "pg_loss": pg_loss, "baseline_loss": baseline_loss, "entropy_loss": entropy_loss,
            "entropy": (entropy * mask).sum() / mask.sum().clamp(min=1)}


def learner_losses(agent, batch: dict[str, torch.Tensor], initial_state: tuple[torch.Tensor, ...],
                   config: TrainConfig, precision_name: str) -> dict[str, torch.Tensor]:
    """The learner's forward pass over a batch in ``precision_name`` (``bf16``: under autocast; see
    :mod:`trainers.precision`), then :func:`impala_loss` in float32."""
    inputs = {name: batch[name] for name in ("frame", "reward", "done", "last_action", *agent.extra_inputs)}
    with precision.autocast(precision_name, batch["frame"].device):
        outputs, _ = agent(inputs, initial_state)
    return impala_loss(outputs, batch, config)


def checkpoint_schedule(total_steps: int, every: int, first: int = 100) -> list[int]:
    """Steps at which to checkpoint: 0; log-spaced 1-2-5 steps from ``first`` to below ``every`` (the first phases
    of learning); every ``every`` steps; and the end."""
    early = [m * 10**k for k in range(0, 12) for m in (1, 2, 5) if first <= m * 10**k < min(every, total_steps)]
    regular = list(range(every, total_steps, every)) if every > 0 else []
    return sorted({0, *early, *regular, total_steps})


class Trainer:
    """One training run in ``config.out``: ``Trainer(config).run()``; ``resume=True`` continues a stopped run."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True):
        self.config, self.progress = config, progress
        self.run_dir = Path(config.out)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but torch sees no CUDA device")
        self.precision = precision.resolve(config.precision, self.device)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.seeds = np.random.default_rng(config.seed)  # actor seeds
        probe = make_env(config.env, frame_size=config.frame_size, **config.env_options)
        self.obs_shape, self.num_actions = probe.observation_space.shape, int(probe.action_space.n)
        probe.close()
        self.agent = make_agent(config.arch, self.obs_shape, self.num_actions, **config.agent).to(self.device)
        optimizer = RMSpropTF if config.optimizer == "rmsprop_tf1" else torch.optim.RMSprop
        self.optimizer = optimizer(self.agent.parameters(), lr=config.lr, alpha=config.rmsprop_alpha,
                                   eps=config.rmsprop_eps, momentum=config.rmsprop_momentum)
        self.step, self.elapsed, self.updates = 0, 0.0, 0
        self.returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        if resume:
            self._restore()
        else:
            if self.checkpoint_dir.exists() and any(self.checkpoint_dir.glob("step_*.pt")):
                raise UserError(f"{self.run_dir} already holds checkpoints; pass --resume to continue it or choose "
                                "another --out")
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self._write_config(config)
        schedule = checkpoint_schedule(config.steps, config.checkpoint_every, config.first_checkpoint)
        self.schedule = [s for s in schedule if s > self.step or (s == 0 and not resume)]
        self.stop_requested = False

    # ---- the loop ----

    def run(self) -> Path:
        """Train until ``config.steps`` (or SIGINT/SIGTERM); returns the final checkpoint's path."""
        config = self.config
        self.agent.train()
        cpu_agent = self.agent if self.device.type == "cpu" else make_agent(
            config.arch, self.obs_shape, self.num_actions, **config.agent)
        fields = rollout_fields(cpu_agent, self.obs_shape, self.num_actions)
        if config.backend == "ray":
            from trainers.ray_actors import RayWorkers

            workers = RayWorkers(config, self.seeds)
        else:
            workers = _Workers(config, fields, cpu_agent.initial_state(config.envs_per_actor), self.agent, self.seeds)
        workers.publish(self.agent)
        settings = self._process_settings()
        settings.__enter__()
        self.metrics_file = open(self.run_dir / "metrics.csv", "a", newline="")  # noqa: SIM115
        self.metrics_writer = None
        self.tensorboard = _summary_writer(self.run_dir / "tensorboard")
        bar = tqdm(total=config.steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=None if self.progress else True)  # None: only on a terminal
        last_checkpoint = None
        try:
            if self.schedule and self.schedule[0] == 0 and self.step == 0:
                last_checkpoint = self._checkpoint()
                self.schedule.pop(0)
            workers.start()
            started = time.monotonic() - self.elapsed
            while self.step < config.steps and not self.stop_requested:
                batch, initial_state = workers.next_batch(lambda: self.stop_requested)
                if batch is None:
                    break
                losses = self._update(batch, initial_state)
                workers.publish(self.agent)
                self.step += config.unroll * config.batch_size
                self.elapsed = time.monotonic() - started
                self._log(batch, losses)
                bar.update(config.unroll * config.batch_size)
                bar.set_postfix(sps=f"{self.step / max(self.elapsed, 1e-9):.0f}", ret=self._mean(self.returns))
                if self.schedule and self.step >= self.schedule[0]:
                    last_checkpoint = self._checkpoint()
                    while self.schedule and self.step >= self.schedule[0]:
                        self.schedule.pop(0)
            if last_checkpoint is None or last_checkpoint.name != f"step_{self.step:012d}.pt":
                last_checkpoint = self._checkpoint()  # the final one, also after SIGINT/SIGTERM
        finally:
            bar.close()
            workers.shutdown()
            self.metrics_file.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
            settings.__exit__(None, None, None)
        return last_checkpoint

    @contextlib.contextmanager
    def _process_settings(self):
        """While training: SIGINT and SIGTERM stop the run, the learner's thread count, TF32 on a CUDA learner in
        float32; each restored after."""
        previous_handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        previous_threads = torch.get_num_threads()
        if self.config.learner_threads:
            torch.set_num_threads(self.config.learner_threads)
        try:
            with precision.tf32_matmuls(self.device.type == "cuda" and self.precision == "fp32"):
                yield
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            torch.set_num_threads(previous_threads)

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def _update(self, batch: dict[str, torch.Tensor], initial_state) -> dict[str, float]:
        if self.device.type == "cuda":  # page-locked copies go to the GPU asynchronously
            batch = {k: v.pin_memory() for k, v in batch.items()}
            initial_state = tuple(s.pin_memory() for s in initial_state)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        initial_state = tuple(s.to(self.device, non_blocking=True) for s in initial_state)
        losses = learner_losses(self.agent, batch, initial_state, self.config, self.precision)
        self.optimizer.zero_grad()
        losses["total_loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.agent.parameters(), self.config.grad_norm_clip)
        self.optimizer.step()
        self.updates += 1
        return {**{k: v.item() for k, v in losses.items()}, "grad_norm": grad_norm.item()}

    def _log(self, batch: dict[str, torch.Tensor], losses: dict[str, float]) -> None:
        ended = batch["terminal"][1:].cpu()
        self.returns.extend(batch["episode_return"][1:].cpu()[ended].tolist())
        self.lengths.extend(batch["episode_step"][1:].cpu()[ended].tolist())
        row = {"step": self.step, "wall_time": round(self.elapsed, 3),
               "sps": round(self.step / max(self.elapsed, 1e-9), 1), "episodes_ended": int(ended.sum()),
               "mean_return": self._mean(self.returns), "mean_length": self._mean(self.lengths),
               **{k: round(v, 6) for k, v in losses.items()}}
        if self.metrics_writer is None:
            self.metrics_writer = csv.DictWriter(self.metrics_file, fieldnames=list(row))
            if self.metrics_file.tell() == 0:
                self.metrics_writer.writeheader()
        self.metrics_writer.writerow(row)
        self.metrics_file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and value is not None and not (isinstance(value, float) and math.isnan(value)):
                    group = "losses" if "loss" in key or key in ("entropy", "grad_norm") else "charts"
                    self.tensorboard.add_scalar(f"{group}/{key}", value, self.step)

    @staticmethod
    def _mean(values) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    # ---- checkpoints and resume ----

    def _checkpoint(self) -> Path:
        path = save_checkpoint(self.checkpoint_dir / f"step_{self.step:012d}.pt", self.agent, step=self.step,
                               env=self.config.env, wall_time=self.elapsed, mean_return=self._mean(self.returns),
                               precision=self.precision, config=json.loads(self.config.to_json()))
        state = {"step": self.step, "elapsed": self.elapsed, "updates": self.updates,
                 "optimizer": self.optimizer.state_dict(), "model": self.agent.state_dict(),
                 "returns": list(self.returns), "lengths": list(self.lengths),
                 "torch_rng": torch.get_rng_state(), "python_rng": list(random.getstate()[1]),
                 "seed_rng": json.dumps(self.seeds.bit_generator.state)}
        with atomic_path(self.run_dir / "trainer_state.pt") as tmp:
            torch.save(state, tmp)
        return path

    def _write_config(self, config: TrainConfig) -> None:
        with atomic_path(self.run_dir / "config.json") as tmp:
            tmp.write_text(config.to_json())

    def _restore(self) -> None:
        state_path = self.run_dir / "trainer_state.pt"
        if not state_path.is_file():
            raise UserError(f"{self.run_dir}: nothing to resume (no trainer_state.pt)")
        saved = TrainConfig.from_json(self.run_dir / "config.json")
        if (saved.arch, saved.env) != (self.config.arch, self.config.env):
            raise UserError(f"{self.run_dir} holds a {saved.arch} run on {saved.env}, not {self.config.arch} on "
                            f"{self.config.env}")
        state = torch.load(state_path, map_location=self.device, weights_only=True)
        self.agent.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed, self.updates = state["step"], state["elapsed"], state["updates"]
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate((3, tuple(state["python_rng"]), None))
        self.seeds.bit_generator.state = json.loads(state["seed_rng"])
        self._write_config(self.config)


class _Workers:
    """The actors: processes (``actors > 0``) watched for liveness, or one in-process synchronous actor. They
    share rollout slots and the published weights with the learner through shared memory."""

    def __init__(self, config: TrainConfig, fields: dict, initial_state: tuple[torch.Tensor, ...], model,
                 seeds: np.random.Generator):
        self.config, self.seeds = config, seeds
        self.buffers = RolloutBuffers(fields, initial_state, config.buffer_slots, config.unroll, config.envs_per_actor)
        self.weights = SharedWeights(model)
        self.context = mp.get_context("fork")  # buffers and weights are inherited, no file descriptors passed
        self.stop = self.context.Event()
        self.errors = self.context.Queue()
        self.processes: list = []
        self.restarts = RestartBudget(config.max_actor_restarts)
        self.last_check = time.monotonic()
        self.local: Actor | None = None

    def _seed(self) -> int:
        return int(self.seeds.integers(2**31 - 1))

    def publish(self, model) -> None:
        self.weights.publish(model)

    def start(self) -> None:
        if self.config.actors == 0:
            self.local = Actor(self.config, 0, self.buffers, self.weights, self._seed())
            return
        self.processes = [self._spawn(i) for i in range(self.config.actors)]

    def _spawn(self, index: int):
        process = self.context.Process(
            target=run_actor_process, name=f"actor-{index}", daemon=True,
            args=(self.config, index, self.buffers, self.weights, self._seed(), self.stop, self.errors))
        process.start()
        return process

    def next_batch(self, should_stop):
        """Wait for a batch's worth of full slots; every half second, check that every actor is alive."""
        needed = self.config.slots_per_batch
        if self.local is not None:
            for slot in actor_slots(self.config, self.buffers, 0)[:needed]:
                self.local.fill(slot)
            return self.buffers.take(actor_slots(self.config, self.buffers, 0)[:needed])
        while True:
            if time.monotonic() - self.last_check > ACTOR_POLL_SECONDS:
                self._check_actors()
                self.last_check = time.monotonic()
            full = self.buffers.full_slots()
            if len(full) >= needed:
                return self.buffers.take(full[:needed])
            if should_stop():
                return None, None
            time.sleep(0.0005)

    def _check_actors(self) -> None:
        for index, process in enumerate(self.processes):
            if process.is_alive():
                continue
            process.join()
            reason = self._error_of(index)
            self.restarts.spend(f"actor {index}", reason.strip().splitlines()[-1] if reason
                                else f"exit code {process.exitcode}")
            self.processes[index] = self._spawn(index)

    def _error_of(self, index: int) -> str | None:
        found = None
        while not self.errors.empty():
            actor, text = self.errors.get_nowait()
            if actor == index:
                found = text
        return found

    def shutdown(self) -> None:
        self.stop.set()
        for process in self.processes:
            process.join(timeout=5)
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join()
        self.errors.close()
        self.errors.join_thread()
        if self.local is not None:
            self.local.close()


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.csv always has everything
        return None
    return SummaryWriter(str(path))


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) and return the final checkpoint's path."""
    return Trainer(config, resume=resume, progress=progress).run()


def resume_config(run_dir: str | Path, **overrides) -> TrainConfig:
    """The saved config of a run, with ``overrides`` (e.g. a larger ``steps``); ``out`` is ``run_dir``, wherever the
    run was first written (a run directory may have been moved or copied)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.json)")
    return replace(TrainConfig.from_json(path), out=str(run_dir), **overrides)


__all__ = ["Trainer", "TrainerError", "checkpoint_schedule", "impala_loss", "learner_losses", "resume_config",
           "train"]
