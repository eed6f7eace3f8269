"""Shared memory between actors and the learner: rollout slots and published weights.

Rollout slots hold ``T + 1`` steps of an actor's ``E`` environments, frame-aligned: at index ``t`` the frame, the
reward received on arriving at it, ``done`` (the frame starts an episode), ``terminal`` (the step into the frame
ended an episode), the previous action, and what the agent computed on that frame (behaviour logits, the action
taken, any ``extra_inputs``). Index 0 repeats the last index of the actor's previous rollout, and each slot also
keeps the agent state the actor had before index 0, so the learner replays exactly what the actor saw.

No queue or lock crosses processes: every slot belongs to one actor, which alone marks it FULL; the learner alone
marks it FREE. A killed actor therefore never blocks anyone, and its slots are simply handed to its replacement.
Whoever waits for a slot to change sleeps on a :class:`Wakeup` rung after the change, not a lock: waiters check the
slots themselves and wait with a timeout, so a ring that never comes (an actor killed in between) costs only time.
Weights are published with a sequence lock: a reader retries if the version changed while it copied, so no
actor ever loads half-written weights.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from interp.errors import UserError

FREE, FULL = 0, 1


@dataclass(frozen=True)
class Field:
    shape: tuple[int, ...]
    dtype: torch.dtype


def rollout_fields(agent: nn.Module, obs_shape: tuple[int, ...], num_actions: int) -> dict[str, Field]:
    """The schema of one environment step in a rollout; the agent's extra inputs are sized by running it once."""
    fields = {
        "frame": Field(tuple(obs_shape), torch.uint8),
        "reward": Field((), torch.float32),
        "done": Field((), torch.bool),
        "terminal": Field((), torch.bool),
        "last_action": Field((), torch.int64),
        "policy_logits": Field((num_actions,), torch.float32),
        "action": Field((), torch.int64),
        "episode_return": Field((), torch.float32),
        "episode_step": Field((), torch.int64),
    }
    if agent.extra_inputs:
        probe = {"frame": torch.zeros(1, 1, *obs_shape, dtype=torch.uint8), "reward": torch.zeros(1, 1),
                 "done": torch.ones(1, 1, dtype=torch.bool), "last_action": torch.zeros(1, 1, dtype=torch.long)}
        with torch.no_grad():
            outputs, _ = agent(probe, agent.initial_state(1))
        for name in agent.extra_inputs:
            fields[name] = Field(tuple(outputs[name].shape[2:]), outputs[name].dtype)
    return fields


def check_slots_fit(fields: dict[str, Field], initial_state: tuple[torch.Tensor, ...], slots: int, unroll: int,
                    envs: int, shared: bool = True) -> None:
    """Refuse rollout slots the machine has no room for (:func:`check_room`), before any is allocated."""
    needed = slots * ((unroll + 1) * envs * sum(math.prod(f.shape) * f.dtype.itemsize for f in fields.values())
                      + sum(s.numel() * s.element_size() for s in initial_state))
    check_room(needed, shared, f"{slots} rollout slots of {unroll + 1} steps x {envs} environments")


def check_room(needed: int, shared: bool, what: str) -> None:
    """Refuse, before allocating, ``needed`` bytes that the machine does not have: its available memory, and for
    shared memory the free space of ``/dev/shm`` where it lives."""
    room = {"available memory": _available_memory()}
    if shared and Path("/dev/shm").is_dir():
        room["free shared memory (/dev/shm)"] = shutil.disk_usage("/dev/shm").free
    short = {name: free for name, free in room.items() if free is not None and needed > free}
    if short:
        name, free = next(iter(short.items()))
        raise UserError(f"{what} need {needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB of {name}; "
                        "use fewer --num-buffers, a smaller --batch-size, --unroll or --envs-per-actor")


def _available_memory() -> int | None:
    """MemAvailable of ``/proc/meminfo`` in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RolloutBuffers:
    """``slots`` rollouts of ``[T + 1, E, ...]`` per field, plus each slot's initial agent state, in shared memory
    (``shared=False``: in the process's own memory, for an actor that sends its rollouts another way)."""

    def __init__(self, fields: dict[str, Field], initial_state: tuple[torch.Tensor, ...], slots: int, unroll: int,
                 envs: int, shared: bool = True):
        def zeros(*shape: int, dtype: torch.dtype) -> torch.Tensor:
            tensor = torch.zeros(*shape, dtype=dtype)
            return tensor.share_memory_() if shared else tensor

        check_slots_fit(fields, initial_state, slots, unroll, envs, shared)
        self.fields = fields
        self.data = {name: zeros(slots, unroll + 1, envs, *f.shape, dtype=f.dtype) for name, f in fields.items()}
        self.states = tuple(zeros(slots, *s.shape, dtype=s.dtype) for s in initial_state)
        self.status = zeros(slots, dtype=torch.int32)
        self.filled_at = zeros(slots, dtype=torch.float64)

    @property
    def slots(self) -> int:
        return self.status.shape[0]

    def mark_full(self, slot: int) -> None:
        self.filled_at[slot] = time.monotonic()
        self.status[slot] = FULL

    def full_slots(self) -> list[int]:
        """FULL slots, oldest first."""
        full = torch.nonzero(self.status == FULL).flatten().tolist()
        return sorted(full, key=lambda s: float(self.filled_at[s]))

    def take(self, slots: list[int]) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """Copy the slots out as one batch (``[T + 1, len(slots) * E, ...]``, states ``[len * E, ...]``) and free
        them."""
        batch = {name: torch.cat([buffer[s] for s in slots], dim=1) for name, buffer in self.data.items()}
        states = tuple(torch.cat([state[s] for s in slots], dim=0) for state in self.states)
        for s in slots:
            self.status[s] = FREE
        return batch, states


WAKE_SECONDS = 0.1  # the longest a waiter sleeps before it looks again (at its slots, a stop request, its parent)


class Wakeup:
    """A wake-up call across processes (a semaphore): :meth:`ring` after changing the slots, and wait for a change
    with ``clear()``, then checking the slots, then ``wait(timeout)``; a ring between the check and the wait ends
    the wait at once, so none is missed. Sleeping here instead of polling spares the cores a thread's wake-ups
    (polling every millisecond, the baseline's actors woke ~250 times a second each, each time taking the core from
    a busy thread)."""

    def __init__(self, context):
        self._semaphore = context.Semaphore(0)

    def ring(self) -> None:
        self._semaphore.release()

    def clear(self) -> None:
        """Forget the rings so far."""
        while self._semaphore.acquire(False):
            pass

    def wait(self, timeout: float = WAKE_SECONDS) -> None:
        """Sleep until a ring (one since the last :meth:`clear` ends it at once) or ``timeout`` seconds."""
        self._semaphore.acquire(timeout=timeout)


def flat_weights(model: nn.Module) -> torch.Tensor:
    """The model's state as one float32 CPU vector (the form weights travel to actors in)."""
    with torch.no_grad():
        return torch.cat([t.detach().reshape(-1).float().cpu() for t in model.state_dict().values()])


def load_flat_weights(model: nn.Module, flat: torch.Tensor) -> None:
    """The inverse of :func:`flat_weights`."""
    state = model.state_dict()
    with torch.no_grad():
        for tensor, chunk in zip(state.values(), torch.split(flat, [t.numel() for t in state.values()]), strict=True):
            tensor.copy_(chunk.view_as(tensor).to(tensor.dtype))


class SharedWeights:
    """The learner's weights for the actors: one flat shared buffer under a sequence lock (single writer)."""

    def __init__(self, model: nn.Module):
        self.flat = torch.zeros(sum(t.numel() for t in model.state_dict().values()),
                                dtype=torch.float32).share_memory_()
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()  # odd while a write is under way

    def publish(self, model: nn.Module) -> int:
        """Copy the model's weights in; returns the new (even) version."""
        flat = flat_weights(model)
        self.version += 1
        self.flat.copy_(flat)
        self.version += 1
        return int(self.version)

    def fetch(self, model: nn.Module, known_version: int) -> int:
        """Load the newest complete weights into ``model`` if they are newer than ``known_version``."""
        while True:
            before = int(self.version)
            if before == known_version or before == 0:
                return known_version
            if before % 2:
                time.sleep(0.0005)
                continue
            snapshot = self.flat.clone()
            if int(self.version) == before:
                break
        load_flat_weights(model, snapshot)
        return before
