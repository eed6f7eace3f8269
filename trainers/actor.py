"""Actors: step a batch of environments with batched inference and write rollouts into shared slots."""

from __future__ import annotations

import ctypes
import os
import signal
import traceback

import numpy as np
import torch
from tqdm import tqdm

from interp import precision
from interp.agents import make_agent
from interp.agents.stepper import Stepper
from interp.envs import is_minipong, make_vector_env
from interp.errors import UserError
from trainers.config import TrainConfig, spare_cores
from trainers.rollouts import FREE, RolloutBuffers, SharedWeights, Wakeup


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


class _Group:
    """Some of an actor's environments, stepped as one vector environment with its own :class:`Stepper`. ALE games
    step in ale-py's C++ threads after :meth:`send`: meanwhile the actor runs the other group's forward pass."""

    def __init__(self, config: TrainConfig, columns: slice, agent, seed: int, chosen_precision: str):
        count = columns.stop - columns.start
        self.columns = columns
        self.env = make_vector_env(config.env, count, seed=seed + columns.start, frame_size=config.frame_size,
                                   num_threads=config.env_threads, **config.env_options)
        self.stepper = Stepper(agent, count, policy="sampled", precision=chosen_precision,
                               generator=torch.Generator().manual_seed(seed + columns.start))
        obs, _ = self.env.reset(seed=seed + columns.start)
        self.frames = torch.from_numpy(np.asarray(obs))
        self.asynchronous = hasattr(self.env, "send") and hasattr(self.env, "recv")
        self.terminal = torch.zeros(count, dtype=torch.bool)
        self.episode_return = torch.zeros(count)
        self.episode_step = torch.zeros(count, dtype=torch.int64)
        self.needs_reset = torch.zeros(count, dtype=torch.bool)
        self.outputs: dict[str, torch.Tensor] = {}

    def act(self) -> None:
        self.outputs = self.stepper.forward(self.frames)

    def send(self) -> None:
        """Start stepping the games with the chosen actions (ALE: in the background)."""
        if self.asynchronous:
            self.env.send(self.outputs["action"].numpy())

    def receive(self) -> None:
        """The step's results: the next frames, and the episodes' bookkeeping."""
        action = self.outputs["action"]
        step = self.env.recv() if self.asynchronous else self.env.step(action.numpy())
        obs, reward, terminated, truncated, _ = step
        reward = torch.as_tensor(np.asarray(reward), dtype=torch.float32)
        reset = self.needs_reset
        self.episode_return = torch.where(reset, 0.0, self.episode_return + reward)
        self.episode_step = torch.where(reset, 0, self.episode_step + 1)
        self.terminal = torch.as_tensor(np.logical_or(terminated, truncated))
        self.needs_reset = self.terminal.clone()
        self.stepper.advance(action, reward, starts=reset)
        self.frames = torch.from_numpy(np.asarray(obs))

    def recorded(self) -> dict[str, torch.Tensor]:
        stepper = self.stepper
        return {"frame": self.frames, "reward": stepper.reward, "done": stepper.done, "terminal": self.terminal,
                "last_action": stepper.last_action, "episode_return": self.episode_return,
                "episode_step": self.episode_step, **self.outputs}


class Actor:
    """One actor: ``E`` environments stepped together, one forward pass of the agent per step for each group of them
    (:class:`interp.agents.stepper.Stepper`, sampling actions with generators of the actor's own).

    An actor with a core of its own splits ALE games into two groups, so that one group's games step in ale-py's
    threads while it runs the other's forward pass. Where actors outnumber the cores the learner leaves, they overlap
    each other instead, and each steps its games as one group: one forward pass of all ``E`` costs less than two of
    ``E / 2`` (the baseline's linear layer reads its weights once per pass). MiniPong, which steps in this thread,
    is always one group. The vector environments reset an episode on the step after it ends (ignoring that step's
    action); such a step is recorded with ``done`` set on the reset frame, and the learner masks it out of the
    losses.
    """

    def __init__(self, config: TrainConfig, index: int, buffers: RolloutBuffers, weights: SharedWeights,
                 seed: int):
        self.config, self.index, self.buffers, self.weights = config, index, buffers, weights
        envs = config.envs_per_actor
        halves = 2 if envs >= 2 and not is_minipong(config.env) and config.actors <= spare_cores(config) else 1
        bounds = [envs * i // halves for i in range(halves + 1)]
        probe = make_vector_env(config.env, 1, frame_size=config.frame_size, num_threads=1, **config.env_options)
        self.agent = make_agent(config.arch, probe.single_observation_space.shape,
                                int(probe.single_action_space.n), **config.agent)
        probe.close()
        self.weights_version = weights.fetch(self.agent, -1)
        self.precision = precision.resolve(config.precision, "cpu")
        self.groups = [_Group(config, slice(low, high), self.agent, seed, self.precision)
                       for low, high in zip(bounds, bounds[1:], strict=False)]

    def _write(self, slot: int, t: int, group: _Group) -> None:
        recorded = group.recorded()
        for name, buffer in self.buffers.data.items():
            buffer[slot, t, group.columns] = recorded[name]

    def fill(self, slot: int) -> None:
        """Write one rollout of ``T + 1`` steps into ``slot`` with the newest published weights."""
        self.weights_version = self.weights.fetch(self.agent, self.weights_version)
        # One autocast region for the whole rollout: autocast keeps its casts of the weights until its outermost
        # region ends, so bf16 weights are made once per rollout instead of at every step (~20% of an actor's time).
        with precision.autocast(self.precision, "cpu"):
            for group in self.groups:
                group.act()  # the index-0 frames again, under the new weights
                for buffer, tensor in zip(self.buffers.states, group.stepper.state, strict=True):
                    buffer[slot, group.columns] = tensor
                self._write(slot, 0, group)
                group.send()
            for t in range(1, self.config.unroll + 1):
                for group in self.groups:
                    group.receive()
                    group.act()
                    self._write(slot, t, group)
                    if t < self.config.unroll:  # the next rollout's first actions come from its weights
                        group.send()
        self.buffers.mark_full(slot)

    def close(self) -> None:
        for group in self.groups:
            group.env.close()


def _slots_per_actor(config: TrainConfig, buffers: RolloutBuffers) -> int:
    return buffers.slots // max(config.actors, 1)


def actor_slots(config: TrainConfig, buffers: RolloutBuffers, index: int) -> list[int]:
    """The slots owned by actor ``index`` (in-process mode: all of them)."""
    per_actor = _slots_per_actor(config, buffers)
    return list(range(index * per_actor, (index + 1) * per_actor))


def slot_owner(config: TrainConfig, buffers: RolloutBuffers, slot: int) -> int:
    """The actor that owns ``slot`` (the inverse of :func:`actor_slots`)."""
    return slot // _slots_per_actor(config, buffers)


def run_actor_process(config: TrainConfig, index: int, buffers: RolloutBuffers, weights: SharedWeights, seed: int,
                      stop, errors, freed: Wakeup, filled: Wakeup) -> None:
    """Process target: fill this actor's free slots until ``stop`` is set or the parent dies. The learner rings
    ``freed`` when it frees one of this actor's slots; the actor rings ``filled`` when it fills one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner coordinates shutdown
    _die_with_parent()
    torch.set_num_threads(1)
    parent = os.getppid()
    actor = None
    try:
        actor = Actor(config, index, buffers, weights, seed)
        slots = actor_slots(config, buffers, index)
        while not stop.is_set() and os.getppid() == parent:
            freed.clear()
            free = [s for s in slots if int(buffers.status[s]) == FREE]
            if not free:
                freed.wait()
                continue
            actor.fill(free[0])
            filled.ring()
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
