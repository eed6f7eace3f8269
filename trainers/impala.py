"""IMPALA learner: batches actors' rollouts, applies V-trace, and writes checkpoints across training.

Read top to bottom: the loss, the checkpoint schedule, the metrics file, then :class:`Trainer` (set-up, the loop,
checkpoints and resume).

What a run directory holds stays consistent through any interruption: the trainer state of a step is written
before its checkpoint, so every checkpoint's weights are those the state holds at its step; a resume continues from
the state, writes its step's checkpoint if the interruption came between the two, and drops the rows of
``metrics.csv`` written after it. One lock keeps a second ``interp train`` out of a run in progress.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
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
from interp.agents.checkpoint import renamed, safe_load
from interp.envs import make_env
from interp.errors import UserError
from interp.files import atomic_path
from interp.memory import reuse_freed_memory
from interp.runs import Run
from trainers import vtrace
from trainers.actor import TrainerError
from trainers.config import TrainConfig
from trainers.optim import RMSpropTF
from trainers.rollouts import check_slots_fit, rollout_fields
from trainers.workers import Workers, make_workers


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
    :mod:`interp.precision`), then :func:`impala_loss` in float32."""
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


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of the update after ``step`` environment steps: ``config.lr``, or with the linear schedule
    ``config.lr * (1 - step / config.steps)`` (MonoBeast's ``LambdaLR``), never below 0; during a warm-up of
    ``config.lr_warmup`` steps, times ``(step + 1) / config.lr_warmup``. A function of the step alone, so a resumed
    run continues on the same schedule."""
    warmup = min(1.0, (step + 1) / config.lr_warmup) if config.lr_warmup else 1.0
    if config.lr_schedule == "linear":
        return warmup * config.lr * max(0.0, 1.0 - step / max(config.steps, 1))
    return warmup * config.lr


class Metrics:
    """``metrics.csv`` (one row per update) and the same as TensorBoard events."""

    def __init__(self, run: Run, up_to_step: int | None = None):
        """``up_to_step``: on a resume, the rows written after that step (after the state the run resumes from)
        are dropped first, so no step is logged twice."""
        self.path = run.metrics_path
        if up_to_step is not None and self.path.exists():
            _truncate_rows(self.path, up_to_step)
        self.file = open(self.path, "a", newline="")  # noqa: SIM115 (closed by close())
        self.writer: csv.DictWriter | None = None
        self.tensorboard = _summary_writer(run.tensorboard_folder)

    def write(self, row: dict) -> None:
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            if self.file.tell() == 0:
                self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and value is not None and not (isinstance(value, float) and math.isnan(value)):
                    group = "losses" if "loss" in key or key in ("entropy", "grad_norm") else "charts"
                    self.tensorboard.add_scalar(f"{group}/{key}", value, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _truncate_rows(path: Path, step: int) -> None:
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    kept = [rows[0], *[row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]] if rows else []
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as file:
        csv.writer(file).writerows(kept)


class Trainer:
    """One training run in ``config.out``: ``Trainer(config).run()``; ``resume=True`` continues a stopped run."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True):
        self.config, self.progress, self.resume = config, progress, resume
        self.run_files = Run.new(config)
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but torch sees no CUDA device")
        self.precision = precision.resolve(config.precision, self.device)
        self.seeds = np.random.default_rng(config.seed)  # the actors' seeds
        probe = make_env(config.env, frame_size=config.frame_size, **config.env_options)
        self.obs_shape, self.num_actions = probe.observation_space.shape, int(probe.action_space.n)
        probe.close()
        agent = make_agent(config.arch, self.obs_shape, self.num_actions, seed=config.seed, **config.agent)
        check_slots_fit(rollout_fields(agent, self.obs_shape, self.num_actions),  # before the run is written
                        agent.initial_state(config.envs_per_actor), config.buffer_slots, config.unroll,
                        config.envs_per_actor)
        self.agent = agent.to(self.device)
        optimizer = RMSpropTF if config.optimizer == "rmsprop_tf1" else torch.optim.RMSprop
        self.optimizer = optimizer(self.agent.parameters(), lr=config.lr, alpha=config.rmsprop_alpha,
                                   eps=config.rmsprop_eps, momentum=config.rmsprop_momentum)
        self.step, self.elapsed, self.updates = 0, 0.0, 0
        self.returns: deque[float] = deque(maxlen=100)
        self.lengths: deque[int] = deque(maxlen=100)
        self.stop_requested = False

    # ---- the loop ----

    def run(self) -> Path:
        """Train until ``config.steps`` (or SIGINT/SIGTERM); returns the final checkpoint's path."""
        with self.run_files.lock("interp train"), self._process_settings():
            self.run_files.remove_leftovers()
            if self.resume:
                self._restore()
                if finished := self._finished():
                    return finished
            else:
                self._start()
            schedule = checkpoint_schedule(self.config.steps, self.config.checkpoint_every,
                                           self.config.first_checkpoint)
            self.schedule = [s for s in schedule if s > self.step or s == self.step == 0]
            cpu_agent = self.agent if self.device.type == "cpu" else make_agent(
                self.config.arch, self.obs_shape, self.num_actions, **self.config.agent)
            workers = make_workers(self.config, cpu_agent, self.obs_shape, self.num_actions, self.seeds)
            metrics = Metrics(self.run_files, self.step if self.resume else None)
            try:
                return self._loop(workers, metrics)
            finally:
                workers.shutdown()
                metrics.close()

    def _loop(self, workers: Workers, metrics: Metrics) -> Path:
        config, last = self.config, None
        self.agent.train()
        workers.publish(self.agent)
        bar = tqdm(total=config.steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=None if self.progress else True)  # None: only on a terminal
        try:
            if self.schedule and self.schedule[0] == 0:
                last = self._checkpoint()
            workers.start()
            started = time.monotonic() - self.elapsed
            state_saved = time.monotonic()
            while self.step < config.steps and not self.stop_requested and not self.reached_return():
                batch, initial_state = workers.next_batch(lambda: self.stop_requested)
                if batch is None:
                    break
                losses = self._update(batch, initial_state)
                workers.publish(self.agent)
                self.step += config.unroll * config.batch_size
                self.elapsed = time.monotonic() - started
                metrics.write(self._row(batch, losses))
                bar.update(config.unroll * config.batch_size)
                bar.set_postfix(sps=f"{self.step / max(self.elapsed, 1e-9):.0f}", ret=self._mean(self.returns))
                if any(s <= self.step for s in self.schedule):
                    last, state_saved = self._checkpoint(), time.monotonic()
                elif config.state_every_seconds and time.monotonic() - state_saved >= config.state_every_seconds:
                    with self._stop_on_write_error():
                        self._save_state()
                    state_saved = time.monotonic()
        except TrainerError as error:  # the actors cannot go on: keep what was learned
            self._final_checkpoint(last)
            raise TrainerError(f"{error} A final checkpoint at step {self.step} was written.") from None
        finally:
            bar.close()
        return self._final_checkpoint(last)

    def reached_return(self) -> bool:
        """Whether ``--until-return`` is set and the mean return of the last 100 training episodes has reached it."""
        target = self.config.until_return
        return target is not None and len(self.returns) == self.returns.maxlen and np.mean(self.returns) >= target

    def _finished(self) -> Path | None:
        """On a resume: the final checkpoint of a run that already reached its step budget (the last update may
        pass it) or its return; nothing is rewritten."""
        if self.step >= self.config.steps or self.reached_return():
            return self.run_files.checkpoint_path(self.step)
        return None

    def _final_checkpoint(self, last: Path | None) -> Path:
        """The checkpoint of the current step, written unless it already was (also after SIGINT/SIGTERM)."""
        if last is not None and last == self.run_files.checkpoint_path(self.step):
            return last
        return self._checkpoint()

    @contextlib.contextmanager
    def _process_settings(self):
        """While training: SIGINT and SIGTERM stop the run, the learner's thread count, TF32 on a CUDA learner in
        float32, each restored after; and freed memory is reused (:func:`reuse_freed_memory`)."""
        reuse_freed_memory()
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
        if not torch.isfinite(grad_norm):  # one such step makes every weight NaN and the actors' sampling fail
            loss = losses["total_loss"].item()
            raise TrainerError(f"the training diverged at step {self.step}: total loss {loss:.4g}, gradient norm "
                               f"{grad_norm.item():.4g}; this update was not applied, so the weights saved are the "
                               "last finite ones. Train again with a lower --lr or --grad-norm-clip.")
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step)
        self.optimizer.step()
        self.updates += 1
        return {**{k: v.item() for k, v in losses.items()}, "grad_norm": grad_norm.item()}

    def _row(self, batch: dict[str, torch.Tensor], losses: dict[str, float]) -> dict:
        ended = batch["terminal"][1:].cpu()
        self.returns.extend(batch["episode_return"][1:].cpu()[ended].tolist())
        self.lengths.extend(batch["episode_step"][1:].cpu()[ended].tolist())
        return {"step": self.step, "wall_time": round(self.elapsed, 3),
                "sps": round(self.step / max(self.elapsed, 1e-9), 1), "episodes_ended": int(ended.sum()),
                "mean_return": self._mean(self.returns), "mean_length": self._mean(self.lengths),
                **{k: round(v, 6) for k, v in losses.items()}}

    @staticmethod
    def _mean(values) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    # ---- checkpoints and resume ----

    def _checkpoint(self) -> Path:
        """The trainer state of this step, then its checkpoint."""
        while self.schedule and self.schedule[0] <= self.step:
            self.schedule.pop(0)
        with self._stop_on_write_error():
            self._save_state()
            return self._write_checkpoint()

    def _save_state(self) -> None:
        """Write the trainer state of this step, what --resume continues from (a state without a checkpoint of its
        step gets one when the run resumes from it)."""
        state = {"step": self.step, "elapsed": self.elapsed, "updates": self.updates,
                 "optimizer": self.optimizer.state_dict(), "model": self.agent.state_dict(),
                 "returns": list(self.returns), "lengths": list(self.lengths),
                 "seed_rng": json.dumps(self.seeds.bit_generator.state)}
        with atomic_path(self.run_files.state_path) as tmp:
            torch.save(state, tmp)

    @contextlib.contextmanager
    def _stop_on_write_error(self):
        """A full disk (say) stops the run with a clear error."""
        try:
            yield
        except (OSError, RuntimeError) as error:  # torch.save fails only in writing
            raise TrainerError(f"cannot write to {self.run_files.directory} ({_first_line(error)}); the run is "
                               f"intact up to its last checkpoint: free some space and continue with --resume") \
                from None

    def _write_checkpoint(self) -> Path:
        return save_checkpoint(self.run_files.checkpoint_path(self.step), self.agent, step=self.step,
                               env=self.config.env, wall_time=self.elapsed, mean_return=self._mean(self.returns),
                               precision=self.precision, config=json.loads(self.config.to_json()))

    def _start(self) -> None:
        if self.run_files.holds_training():
            raise UserError(f"{self.run_files.directory} already holds a run; pass --resume to continue it or choose "
                            "another --out")
        self.run_files.write_config()

    def _restore(self) -> None:
        path = self.run_files.state_path
        if not path.is_file():
            raise UserError(f"{self.run_files.directory}: nothing to resume (no trainer_state.pt)")
        saved = TrainConfig.from_json(self.run_files.config_path)
        changed = self.config.changed_from(saved)
        if changed:
            values = "; ".join(f"{name}: {run!r} in the run, {now!r} now" for name, (now, run) in changed.items())
            raise UserError(f"{self.run_files.directory} holds a {saved.arch} run on {saved.env}; its "
                            f"{', '.join(changed)} cannot change on --resume ({values})")
        try:
            state = safe_load(path, self.device)  # torch's own refusal would advise loading it unsafely
            self.agent.load_state_dict(renamed(state["model"], self.agent.state_dict(), path))
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.elapsed, self.updates = int(state["step"]), float(state["elapsed"]), int(state["updates"])
            self.returns.extend(state["returns"])
            self.lengths.extend(state["lengths"])
            self.seeds.bit_generator.state = json.loads(state["seed_rng"])
        except Exception as error:  # truncated, foreign or tampered state: nothing to resume from
            reason = _first_line(error).removeprefix(f"{path}: ")
            raise UserError(f"{path}: not a readable trainer state ({reason}); the checkpoints are intact, but this "
                            "run cannot be resumed") from None
        if not self.run_files.checkpoint_path(self.step).exists():  # stopped between the state and its checkpoint
            self._write_checkpoint()
        if not self._finished():
            self.run_files.write_config()  # the machine's new settings


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
    if not Run.started(run_dir):
        raise UserError(f"{run_dir}: not a run directory (no config.json)")
    return replace(TrainConfig.from_json(Run.config_file(run_dir)), out=str(run_dir), **overrides)


__all__ = ["Metrics", "Trainer", "TrainerError", "checkpoint_schedule", "impala_loss", "learner_losses",
           "learning_rate", "resume_config", "train"]
