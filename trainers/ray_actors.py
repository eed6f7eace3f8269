"""The Ray backend of the trainer: actors as Ray actors, rollouts and weights through Ray's object store.

Same run directory, checkpoints and metrics as the local backend (:class:`trainers.impala._Workers`); only the way
rollouts and weights travel differs:

- each Ray actor runs the same :class:`trainers.actor.Actor` (``E`` environments, batched inference) on a one-slot
  buffer of its own and returns each rollout as the result of a method call, which Ray keeps in its object store
  until the learner fetches it;
- after every update the learner puts the flat weights into the object store once (``ray.put``) and passes that one
  reference with every rollout request, so each update costs one copy whatever the number of actors;
- every actor has ``IN_FLIGHT`` requests queued, so it starts its next rollout while the learner trains;
- an actor that dies (its process killed, its node lost, an exception in its environment) is replaced by a new one
  up to ``config.max_actor_restarts`` times; then the run stops with :class:`~trainers.actor.TrainerError`.
  ``ray.wait`` returns at least every ``ACTOR_POLL_SECONDS``, so a dead actor is found within a second.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from interp.agents import make_agent
from interp.cluster import connect, disconnect, import_ray
from interp.envs import make_env
from trainers.actor import Actor, RestartBudget
from trainers.config import TrainConfig
from trainers.rollouts import RolloutBuffers, flat_weights, load_flat_weights, rollout_fields

IN_FLIGHT = 2
ACTOR_POLL_SECONDS = 0.5


class _ObjectStoreWeights:
    """What :class:`Actor` reads its weights from: here, the version and flat vector of the latest request."""

    def __init__(self) -> None:
        self.version, self.flat = 0, None

    def fetch(self, model: torch.nn.Module, known_version: int) -> int:
        if self.version in (0, known_version):
            return known_version
        load_flat_weights(model, self.flat)
        return self.version


class RolloutWorker:
    """The body of one Ray actor (wrapped with ``ray.remote`` at run time, so importing this needs no Ray)."""

    def __init__(self, config: TrainConfig, index: int, seed: int):
        torch.set_num_threads(1)
        probe = make_env(config.env, frame_size=config.frame_size, **config.env_options)
        obs_shape, num_actions = probe.observation_space.shape, int(probe.action_space.n)
        probe.close()
        agent = make_agent(config.arch, obs_shape, num_actions, **config.agent)
        self.buffers = RolloutBuffers(rollout_fields(agent, obs_shape, num_actions),
                                      agent.initial_state(config.envs_per_actor), 1, config.unroll,
                                      config.envs_per_actor, shared=False)
        self.weights = _ObjectStoreWeights()
        self.actor = Actor(config, index, self.buffers, self.weights, seed)

    def rollout(self, weights: tuple[int, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """One rollout under ``weights`` (version, flat vector): ``([T + 1, E, ...] per field, initial state
        [E, ...])``."""
        self.weights.version, self.weights.flat = weights
        self.actor.fill(0)
        return self.buffers.take([0])

    def pid(self) -> int:
        """The actor's process id (to watch or kill it)."""
        return os.getpid()


class RayWorkers:
    """The trainer's actors on Ray: ``publish(model)``, ``start()``, ``next_batch(should_stop)``, ``shutdown()``
    as the local backend."""

    def __init__(self, config: TrainConfig, seeds: np.random.Generator):
        self.config, self.seeds = config, seeds
        self.ray = import_ray()
        self.started_ray = connect(config.ray_address, num_cpus=max(os.cpu_count() or 1, config.actors))
        self.remote_class = self.ray.remote(num_cpus=1)(RolloutWorker)
        self.actors: list = []
        self.pending: dict = {}  # object ref -> actor index
        self.restarts = RestartBudget(config.max_actor_restarts)
        self.weights = None
        self.version = 0
        self.ready: list = []  # rollouts received, not yet batched

    def publish(self, model: torch.nn.Module) -> None:
        self.version += 1
        self.weights = self.ray.put((self.version, flat_weights(model)))  # one object-store copy per update

    def start(self) -> None:
        self.actors = [self._spawn(index) for index in range(max(self.config.actors, 1))]
        for index in range(len(self.actors)):
            for _ in range(IN_FLIGHT):
                self._request(index)

    def _spawn(self, index: int):
        seed = int(self.seeds.integers(2**31 - 1))
        return self.remote_class.remote(self.config, index, seed)

    def _request(self, index: int) -> None:
        # the reference, not the weights: Ray hands every actor the one stored copy
        self.pending[self.actors[index].rollout.remote(self.weights)] = index

    def next_batch(self, should_stop):
        """Wait for ``batch_size / envs_per_actor`` rollouts and return them as one batch, the oldest first."""
        needed = self.config.slots_per_batch
        while len(self.ready) < needed:
            if should_stop():
                return None, None
            done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=ACTOR_POLL_SECONDS)
            for ref in done:
                index = self.pending.pop(ref)
                try:
                    self.ready.append(self.ray.get(ref))
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as error:
                    self._replace(index, error)
                    continue
                self._request(index)
        rollouts, self.ready = self.ready[:needed], self.ready[needed:]
        batch = {name: torch.cat([r[0][name] for r in rollouts], dim=1) for name in rollouts[0][0]}
        states = tuple(torch.cat(parts, dim=0) for parts in zip(*(r[1] for r in rollouts), strict=True))
        return batch, states

    def _replace(self, index: int, error: Exception) -> None:
        self.restarts.spend(f"Ray actor {index}", str(error).strip().splitlines()[0] if str(error).strip()
                            else type(error).__name__)
        self.ray.kill(self.actors[index], no_restart=True)
        for ref in [ref for ref, owner in self.pending.items() if owner == index]:
            del self.pending[ref]  # the dead actor's other requests fail too; they are not waited for
        self.actors[index] = self._spawn(index)
        for _ in range(IN_FLIGHT):
            self._request(index)

    def shutdown(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors, self.pending = [], {}
        disconnect(self.started_ray)
