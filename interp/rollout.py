"""The one rollout loop: a policy playing one gymnasium environment, a step at a time.

    >>> for step in rollout(env, "sampled", agent=agent, seed=0, steps=1000):
    ...     step.obs, step.action, step.reward, step.ended      # and the agent's inputs and outputs

One vocabulary for a policy (:data:`POLICIES`): ``"greedy"`` (the agent's most likely action), ``"sampled"`` (drawn
from the agent's policy with ``generator``), ``"random"`` (uniform over the actions with ``generator``; no agent), or
a callable ``obs -> action`` (a scripted player).

The episode boundary, in one place for each kind of environment:

- one environment (:func:`rollout`): a step that ends an episode (terminated or truncated) is yielded with the
  environment still at that end, so its ``info`` and state can be read; the environment is reset (without a seed:
  it goes on from its own generator) before the next step, which starts an episode for the agent (its state,
  previous action and reward reset). The first reset is seeded ``seed``.
- a vector environment (:class:`VectorRollout`, ``N`` games with one batched forward pass per step, as the trainer's
  actors and the evaluation play): gymnasium's next-step autoreset. The step after one that ends a game's episode
  resets that game and ignores its action; the reset frame starts an episode for the agent and for the bookkeeping
  (``episode_return`` and ``episode_step`` back to 0). The first reset is seeded ``seed`` (game ``i``: ``seed + i``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from interp.agents.base import Agent
from interp.agents.stepper import POLICIES as AGENT_POLICIES
from interp.agents.stepper import Stepper
from interp.steps import Steps

POLICIES = (*AGENT_POLICIES, "random")


@dataclass(frozen=True)
class Transition:
    """One step of a rollout."""

    index: int
    """the step's number in the rollout, from 0"""
    obs: np.ndarray
    """the observation the action was chosen on, ``[C, S, S]``"""
    info: dict
    """the info that came with ``obs``"""
    rgb: np.ndarray | None
    """the screen of ``obs`` (``env.render()``, ``[H, W, 3]``) when the rollout renders, else None"""
    steps: Steps | None
    """the agent's inputs ``[1, 1, ...]`` and its state before the step (None without an agent)"""
    outputs: dict[str, torch.Tensor] | None
    """the agent's outputs ``[1, ...]``, ``action`` included (None without an agent)"""
    action: int
    reward: float
    terminated: bool
    truncated: bool
    next_info: dict
    """the info the step returned"""
    episode_return: float
    """the episode's return before this step's reward"""

    @property
    def ended(self) -> bool:
        return self.terminated or self.truncated


def rollout(env: gym.Env, policy: str | Callable[[np.ndarray], int], *, agent: Agent | None = None, seed: int = 0,
            steps: int | None = None, episodes: int | None = None, render: bool = False,
            generator: torch.Generator | None = None) -> Iterator[Transition]:
    """Play ``env`` with ``policy`` for at most ``steps`` steps and ``episodes`` episodes (None: no limit), yielding
    each step after the environment took it. ``generator`` (default: seeded ``seed``) draws the sampled and random
    actions."""
    if isinstance(policy, str) and policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES} or a callable, got {policy!r}")
    if policy in AGENT_POLICIES and agent is None:
        raise ValueError(f"the {policy} policy needs an agent")
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    stepper = (Stepper(agent, 1, policy=policy, generator=generator)
               if policy in AGENT_POLICIES else None)
    num_actions = int(env.action_space.n)
    obs, info = env.reset(seed=seed)
    index, ended_episodes, episode_return = 0, 0, 0.0
    while (steps is None or index < steps) and (episodes is None or ended_episodes < episodes):
        rgb = env.render() if render else None
        frame = torch.from_numpy(np.asarray(obs))[None]
        inputs = stepper.steps(frame) if stepper is not None else None
        outputs = stepper.forward(frame) if stepper is not None else None
        if outputs is not None:
            action = int(outputs["action"][0])
        elif callable(policy):
            action = int(policy(obs))
        else:
            action = int(torch.randint(num_actions, (1,), generator=generator)[0])
        next_obs, reward, terminated, truncated, next_info = env.step(action)
        yield Transition(index, obs, info, rgb, inputs, outputs, action, float(reward), bool(terminated),
                         bool(truncated), next_info, episode_return)
        ended = terminated or truncated
        if stepper is not None:
            stepper.advance(outputs["action"], [float(reward)], starts=[ended])
        index, episode_return = index + 1, 0.0 if ended else episode_return + float(reward)
        ended_episodes += ended
        obs, info = env.reset() if ended else (next_obs, next_info)


class VectorRollout:
    """A policy playing the ``N`` games of a vector environment together, one batched forward pass per step.

    >>> games = VectorRollout(make_vector_env("ALE/Pong-v5", 16, seed=0), "sampled", agent=agent, seed=0)
    >>> games.step()                       # or act(), send(), receive(): see below
    >>> games.frames, games.reward, games.terminal, games.episode_return, games.outputs

    A step is :meth:`act` (choose the actions for :attr:`frames`), :meth:`send` (start stepping the games: ALE games
    step in ale-py's threads after it, so the caller may run another rollout's forward pass meanwhile) and
    :meth:`receive` (the next frames and the episodes' bookkeeping); :meth:`step` is the three in a row. Tensors are
    ``[N]`` on the CPU except :attr:`outputs` (the agent's device). ``precision`` is the :class:`Stepper`'s.
    """

    def __init__(self, env: VectorEnv, policy: str, *, agent: Agent | None = None, seed: int = 0,
                 generator: torch.Generator | None = None, precision: str = "fp32"):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if policy in AGENT_POLICIES and agent is None:
            raise ValueError(f"the {policy} policy needs an agent")
        count = env.num_envs
        self.env, self.num_actions = env, int(env.single_action_space.n)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.stepper = (Stepper(agent, count, policy=policy, generator=self.generator, precision=precision)
                        if policy in AGENT_POLICIES else None)
        """the agent's side of the step (None for the random policy)"""
        obs, _ = env.reset(seed=seed)
        self.frames = torch.from_numpy(np.asarray(obs))
        """the frames the next actions are chosen on, ``[N, C, S, S]`` uint8"""
        self.outputs: dict[str, torch.Tensor] = {}
        """the agent's outputs ``[N, ...]`` for :attr:`frames`, ``action`` included (only ``action`` for random)"""
        self.reward = torch.zeros(count)
        """the rewards of the last step"""
        self.terminal = torch.zeros(count, dtype=torch.bool)
        """whether the last step ended the game's episode (terminated or truncated)"""
        self.episode_return = torch.zeros(count)
        """the return of each game's episode so far, this step's reward included"""
        self.episode_step = torch.zeros(count, dtype=torch.int64)
        """the steps of each game's episode so far (0 on its first frame)"""
        self._asynchronous = hasattr(env, "send") and hasattr(env, "recv")

    def act(self) -> dict[str, torch.Tensor]:
        """Choose the actions for :attr:`frames` (again, with new weights say: the agent's state moves on only
        with :meth:`receive`)."""
        if self.stepper is None:
            self.outputs = {"action": torch.randint(self.num_actions, (self.env.num_envs,), generator=self.generator)}
        else:
            self.outputs = self.stepper.forward(self.frames)
        return self.outputs

    def send(self) -> None:
        """Start stepping the games with the chosen actions (ALE: in the background)."""
        if self._asynchronous:
            self.env.send(self.outputs["action"].cpu().numpy())

    def receive(self) -> None:
        """Finish the step: the next frames, rewards and episode ends, and the agent's state moved on."""
        action = self.outputs["action"]
        step = self.env.recv() if self._asynchronous else self.env.step(action.cpu().numpy())
        obs, reward, terminated, truncated, _ = step
        starts = self.terminal  # the games whose episode ended last step were reset by this one
        self.reward = torch.as_tensor(np.asarray(reward), dtype=torch.float32)
        self.episode_return = torch.where(starts, 0.0, self.episode_return + self.reward)
        self.episode_step = torch.where(starts, 0, self.episode_step + 1)
        self.terminal = torch.as_tensor(np.logical_or(terminated, truncated))
        if self.stepper is not None:
            self.stepper.advance(action, self.reward, starts=starts)
        self.frames = torch.from_numpy(np.asarray(obs))

    def step(self) -> None:
        """One step of every game: :meth:`act`, :meth:`send` and :meth:`receive`."""
        self.act()
        self.send()
        self.receive()

    def close(self) -> None:
        self.env.close()
