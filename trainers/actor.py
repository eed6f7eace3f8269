"""Actors: step a batch of environments with batched inference and write rollouts into shared slots."""

from __future__ import annotations

import ctypes
import os
import signal
import time
import traceback

import numpy as np
import torch
from tqdm import tqdm

from interp import precision
from interp.agents import make_agent
from interp.agents.stepper import Stepper
from interp.envs import make_vector_env
from interp.errors import UserError
from trainers.config import TrainConfig
from trainers.rollouts import FREE, RolloutBuffers, SharedWeights


class TrainerError(UserError):
    """Training cannot go on (actors keep dying, the disk is full); the message says why, in one line."""


class RestartBudget:
    """The actor restarts a run allows (``config.max_actor_restarts``), shared by both backends: each death
    uses one, and a death with none left stops the run."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def spend(self, actor: str, reason: str) -> None:
        """Count the death of ``actor`` (e.g. ``"actor 1"``) from ``reason``, or raise :class:`TrainerError`."""
        if self.used >= self.limit:
            raise TrainerError(f"{actor} died ({reason}) and {self.used} restarts are used up; stopping. The last "
                               "checkpoint is intact.")
        self.used += 1
        tqdm.write(f"{actor} died ({reason}); restarting it ({self.used}/{self.limit})")


class Actor:
    """One actor: ``E`` environments stepped together, one forward pass of the agent per step for all of them
    (:class:`interp.agents.stepper.Stepper`, sampling actions with the actor's own generator).

    The vector environments reset an episode on the step after it ends (ignoring that step's action); such a step
    is recorded with ``done`` set on the reset frame, and the learner masks it out of the losses.
    """

    def __init__(self, config: TrainConfig, index: int, buffers: RolloutBuffers, weights: SharedWeights,
                 seed: int):
        self.config, self.index, self.buffers, self.weights = config, index, buffers, weights
        envs = config.envs_per_actor
        self.env = make_vector_env(config.env, envs, seed=seed, frame_size=config.frame_size, **config.env_options)
        obs_shape = self.env.single_observation_space.shape
        agent = make_agent(config.arch, obs_shape, int(self.env.single_action_space.n), **config.agent)
        self.weights_version = weights.fetch(agent, -1)
        self.stepper = Stepper(agent, envs, policy="sample", generator=torch.Generator().manual_seed(seed),
                               precision=precision.resolve(config.precision, "cpu"))
        obs, _ = self.env.reset(seed=seed)
        self.frames = torch.from_numpy(np.asarray(obs))
        self.terminal = torch.zeros(envs, dtype=torch.bool)
        self.episode_return = torch.zeros(envs)
        self.episode_step = torch.zeros(envs, dtype=torch.int64)
        self.needs_reset = torch.zeros(envs, dtype=torch.bool)

    def _write(self, slot: int, t: int, outputs: dict[str, torch.Tensor]) -> None:
        stepper = self.stepper
        recorded = {"frame": self.frames, "reward": stepper.reward, "done": stepper.done, "terminal": self.terminal,
                    "last_action": stepper.last_action, "episode_return": self.episode_return,
                    "episode_step": self.episode_step}
        for name, buffer in self.buffers.data.items():
            buffer[slot, t] = recorded[name] if name in recorded else outputs[name]

    def fill(self, slot: int) -> None:
        """Write one rollout of ``T + 1`` steps into ``slot`` with the newest published weights."""
        self.weights_version = self.weights.fetch(self.stepper.agent, self.weights_version)
        outputs = self.stepper.forward(self.frames)  # the index-0 frame again, under the new weights
        for buffer, tensor in zip(self.buffers.states, self.stepper.state, strict=True):
            buffer[slot] = tensor
        self._write(slot, 0, outputs)
        for t in range(1, self.config.unroll + 1):
            action = outputs["action"]
            obs, reward, terminated, truncated, _ = self.env.step(action.numpy())
            reward = torch.as_tensor(np.asarray(reward), dtype=torch.float32)
            reset = self.needs_reset
            self.episode_return = torch.where(reset, 0.0, self.episode_return + reward)
            self.episode_step = torch.where(reset, 0, self.episode_step + 1)
            self.terminal = torch.as_tensor(np.logical_or(terminated, truncated))
            self.needs_reset = self.terminal.clone()
            self.stepper.advance(action, reward, starts=reset)
            self.frames = torch.from_numpy(np.asarray(obs))
            outputs = self.stepper.forward(self.frames)
            self._write(slot, t, outputs)
        self.buffers.mark_full(slot)

    def close(self) -> None:
        self.env.close()


def actor_slots(config: TrainConfig, buffers: RolloutBuffers, index: int) -> list[int]:
    """The slots owned by actor ``index`` (in-process mode: all of them)."""
    per_actor = buffers.slots // max(config.actors, 1)
    return list(range(index * per_actor, (index + 1) * per_actor))


def run_actor_process(config: TrainConfig, index: int, buffers: RolloutBuffers, weights: SharedWeights, seed: int,
                      stop, errors) -> None:
    """Process target: fill this actor's free slots until ``stop`` is set or the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner coordinates shutdown
    _die_with_parent()
    torch.set_num_threads(1)
    parent = os.getppid()
    actor = None
    try:
        actor = Actor(config, index, buffers, weights, seed)
        slots = actor_slots(config, buffers, index)
        while not stop.is_set() and os.getppid() == parent:
            free = [s for s in slots if int(buffers.status[s]) == FREE]
            if not free:
                time.sleep(0.001)
                continue
            actor.fill(free[0])
    except Exception:  # reported to the learner, which decides to restart or stop
        errors.put((index, traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        if actor is not None:
            actor.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (even by SIGKILL), so no actor is ever orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the getppid() check in the loop still ends the actor
        pass
