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

from interp.agents import make_agent
from interp.envs import make_vector_env
from trainers import precision
from trainers.config import TrainConfig
from trainers.rollouts import FREE, RolloutBuffers, SharedWeights


class TrainerError(RuntimeError):
    """Training cannot go on (e.g. actors keep dying); the message says why."""


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
    """One actor: ``E`` environments stepped together, one forward pass of the agent per step for all of them.

    The vector environments reset an episode on the step after it ends (ignoring that step's action); such a step
    is recorded with ``done`` set on the reset frame, and the learner masks it out of the losses.
    """

    def __init__(self, config: TrainConfig, index: int, buffers: RolloutBuffers, weights: SharedWeights,
                 seed: int):
        self.config, self.index, self.buffers, self.weights = config, index, buffers, weights
        self.precision = precision.resolve(config.precision, "cpu")
        envs = config.envs_per_actor
        torch.manual_seed(seed)
        self.env = make_vector_env(config.env, envs, seed=seed, frame_size=config.frame_size, **config.env_options)
        obs_shape = self.env.single_observation_space.shape
        self.agent = make_agent(config.arch, obs_shape, int(self.env.single_action_space.n), **config.agent)
        self.agent.train()  # sample actions
        self.weights_version = weights.fetch(self.agent, -1)
        obs, _ = self.env.reset(seed=seed)
        self.step_inputs = {
            "frame": torch.from_numpy(np.asarray(obs))[None],
            "reward": torch.zeros(1, envs),
            "done": torch.ones(1, envs, dtype=torch.bool),
            "terminal": torch.zeros(1, envs, dtype=torch.bool),
            "last_action": torch.zeros(1, envs, dtype=torch.int64),
            "episode_return": torch.zeros(1, envs),
            "episode_step": torch.zeros(1, envs, dtype=torch.int64),
        }
        self.state = self.agent.initial_state(envs)
        self.needs_reset = np.zeros(envs, dtype=bool)
        self._act()

    def _act(self) -> None:
        """Run the agent on the current frame (in the run's precision); keep its outputs and the float32 state
        after it."""
        with torch.no_grad(), precision.autocast(self.precision, "cpu"):
            self.outputs, state = self.agent(self.step_inputs, self.state)
        self.next_state = tuple(s.float() if s.is_floating_point() else s for s in state)

    def _write(self, slot: int, t: int) -> None:
        for name, buffer in self.buffers.data.items():
            source = self.step_inputs if name in self.step_inputs else self.outputs
            buffer[slot, t] = source[name][0]

    def fill(self, slot: int) -> None:
        """Write one rollout of ``T + 1`` steps into ``slot`` with the newest published weights."""
        self.weights_version = self.weights.fetch(self.agent, self.weights_version)
        self._act()  # the index-0 frame again, under the new weights
        for buffer, tensor in zip(self.buffers.states, self.state, strict=True):
            buffer[slot] = tensor
        self._write(slot, 0)
        for t in range(1, self.config.unroll + 1):
            action = self.outputs["action"][0]
            obs, reward, terminated, truncated, _ = self.env.step(action.numpy())
            reward = torch.as_tensor(np.asarray(reward), dtype=torch.float32)
            ended = torch.as_tensor(np.logical_or(terminated, truncated))
            reset = torch.as_tensor(self.needs_reset)
            previous = self.step_inputs
            episode_return = torch.where(reset, 0.0, previous["episode_return"][0] + reward)
            episode_step = torch.where(reset, 0, previous["episode_step"][0] + 1)
            self.step_inputs = {
                "frame": torch.from_numpy(np.asarray(obs))[None],
                "reward": torch.where(reset, 0.0, reward)[None],
                "done": reset[None],
                "terminal": ended[None],
                "last_action": torch.where(reset, 0, action)[None],
                "episode_return": episode_return[None],
                "episode_step": episode_step[None],
            }
            self.needs_reset = ended.numpy().copy()
            self.state = self.next_state
            self._act()
            self._write(slot, t)
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
