"""The actors as the learner sees them: one :class:`Workers` protocol, two backends (local processes here, Ray
actors in :mod:`trainers.ray_actors`)."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Protocol

import numpy as np
import torch

from trainers.actor import Actor, RestartBudget, actor_slots, run_actor_process, slot_owner
from trainers.config import TrainConfig
from trainers.rollouts import RolloutBuffers, SharedWeights, Wakeup, rollout_fields

ACTOR_POLL_SECONDS = 0.5  # how often the learner checks that its actors are alive while it waits

Batch = tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]


class Workers(Protocol):
    """What the learner asks of its actors, whatever runs them."""

    restarts: RestartBudget

    def publish(self, model: torch.nn.Module) -> None:
        """Make the model's weights the ones the actors act with from their next rollout on."""

    def start(self) -> None:
        """Start the actors."""

    def next_batch(self, should_stop) -> Batch | tuple[None, None]:
        """Rollouts of ``batch_size`` environments ``[T + 1, B, ...]`` with their initial states, or ``(None,
        None)`` once ``should_stop()``; an actor that dies is replaced (``restarts``) or the run stops with
        :class:`trainers.actor.TrainerError`."""

    def shutdown(self) -> None:
        """Stop every actor; no process or task is left behind."""


def make_workers(config: TrainConfig, agent: torch.nn.Module, obs_shape: tuple[int, ...], num_actions: int,
                 seeds: np.random.Generator) -> Workers:
    """The backend ``config.backend`` asks for; ``agent`` (on the CPU) sizes the rollouts."""
    if config.backend == "ray":
        from trainers.ray_actors import RayWorkers

        return RayWorkers(config, seeds)
    fields = rollout_fields(agent, obs_shape, num_actions)
    return LocalWorkers(config, fields, agent.initial_state(config.envs_per_actor), agent, seeds)


class LocalWorkers:
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
        self.filled = Wakeup(self.context)
        self.freed = [Wakeup(self.context) for _ in range(config.actors)]
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
            args=(self.config, index, self.buffers, self.weights, self._seed(), self.stop, self.errors,
                  self.freed[index], self.filled))
        process.start()
        return process

    def next_batch(self, should_stop) -> Batch | tuple[None, None]:
        """Wait for a batch's worth of full slots (asleep until an actor fills one); every half second, check that
        every actor is alive."""
        needed = self.config.slots_per_batch
        if self.local is not None:
            for slot in actor_slots(self.config, self.buffers, 0)[:needed]:
                self.local.fill(slot)
            return self.buffers.take(actor_slots(self.config, self.buffers, 0)[:needed])
        while True:
            if time.monotonic() - self.last_check > ACTOR_POLL_SECONDS:
                self._check_actors()
                self.last_check = time.monotonic()
            self.filled.clear()
            full = self.buffers.full_slots()
            if len(full) >= needed:
                return self._take(full[:needed])
            if should_stop():
                return None, None
            self.filled.wait()

    def _take(self, slots: list[int]) -> Batch:
        batch = self.buffers.take(slots)
        for slot in slots:
            self.freed[slot_owner(self.config, self.buffers, slot)].ring()
        return batch

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
        for freed in self.freed:
            freed.ring()
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
