"""The one rollout loop: a policy playing one gymnasium environment, a step at a time.

    >>> for step in rollout(env, "sampled", agent=agent, seed=0, steps=1000):
    ...     step.obs, step.action, step.reward, step.ended      # and the agent's inputs and outputs

One vocabulary for a policy (:data:`POLICIES`): ``"greedy"`` (the agent's most likely action), ``"sampled"`` (drawn
from the agent's policy with ``generator``), ``"random"`` (uniform over the actions with ``generator``; no agent), or
a callable ``obs -> action`` (a scripted player).

The episode boundary, in one place: a step that ends an episode (terminated or truncated) is yielded with the
environment still at that end, so its ``info`` and state can be read; the environment is reset (without a seed: it
goes on from its own generator) before the next step, which starts an episode for the agent (its state, previous
action and reward reset). The first reset is seeded ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

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
