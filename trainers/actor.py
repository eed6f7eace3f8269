"""Actors: step a batch of environments with batched inference and write rollouts into shared slots."""

from __future__ import annotations

import ctypes
import os
import signal
import traceback
from typing import NamedTuple

import torch
from tqdm import tqdm

from interp import precision
from interp.agents import make_agent
from interp.envs import is_minipong, make_vector_env
from interp.errors import UserError
from interp.rollout import VectorRollout
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


class _Group(NamedTuple):
    """Some of an actor's environments (``columns`` of its rollouts), stepped as one vector environment."""

    columns: slice
    games: VectorRollout

    def recorded(self) -> dict[str, torch.Tensor]:
        """What the rollout buffers record of the current step, ``[E_group, ...]``."""
        games, stepper = self.games, self.games.stepper
        return {"frame": games.frames, "reward": stepper.reward, "done": stepper.done, "terminal": games.terminal,
                "last_action": stepper.last_action, "episode_return": games.episode_return,
                "episode_step": games.episode_step, **games.outputs}


class Actor:
    """One actor: ``E`` environments stepped together, one forward pass of the agent per step for each group of them
    (:class:`interp.rollout.VectorRollout`, sampling actions with generators of the actor's own).

    An actor with a core of its own splits ALE games into two groups, so that one group's games step in ale-py's
    threads while it runs the other's forward pass. Where actors outnumber the cores the learner leaves, they overlap
    each other instead, and each steps its games as one group: one forward pass of all ``E`` costs less than two of
    ``E / 2`` (the baseline's linear layer reads its weights once per pass). MiniPong, which steps in this thread,
    is always one group. A game resets on the step after its episode ends (the rollout's rule for vector
    environments); such a step is recorded with ``done`` set on the reset frame, and the learner masks it out of the
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
        self.groups = [_Group(slice(low, high), self._games(high - low, seed + low))
                       for low, high in zip(bounds, bounds[1:], strict=False)]

    def _games(self, count: int, seed: int) -> VectorRollout:
        config = self.config
        env = make_vector_env(config.env, count, seed=seed, frame_size=config.frame_size,
                              num_threads=config.env_threads, **config.env_options)
        return VectorRollout(env, "sampled", agent=self.agent, seed=seed, precision=self.precision)

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
                group.games.act()  # the index-0 frames again, under the new weights
                for buffer, tensor in zip(self.buffers.states, group.games.stepper.state, strict=True):
                    buffer[slot, group.columns] = tensor
                self._write(slot, 0, group)
                group.games.send()
            for t in range(1, self.config.unroll + 1):
                for group in self.groups:
                    group.games.receive()
                    group.games.act()
                    self._write(slot, t, group)
                    if t < self.config.unroll:  # the next rollout's first actions come from its weights
                        group.games.send()
        self.buffers.mark_full(slot)

    def close(self) -> None:
        for group in self.groups:
            group.games.close()


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
