"""An agent as a policy over single observations, for behavioural tests such as the dual-ball probe."""

from __future__ import annotations

import numpy as np
import torch

from interp.agents.base import Agent
from interp.agents.stepper import Stepper


class AgentPolicy:
    """``policy(obs) -> action`` for an agent that needs its state, previous action and reward: call ``reset()`` at
    each episode start and ``observe(reward)`` after each step. Greedy (the most likely action) by default; with
    ``greedy=False`` actions are drawn with ``generator``."""

    def __init__(self, agent: Agent, greedy: bool = True, generator: torch.Generator | None = None):
        self.stepper = Stepper(agent, 1, policy="greedy" if greedy else "sample", generator=generator)
        self.action: torch.Tensor | None = None

    def reset(self) -> None:
        self.stepper.reset()
        self.action = None

    def observe(self, reward: float) -> None:
        """The reward of the action :meth:`__call__` chose; the episode goes on."""
        self.stepper.advance(self.action, [reward], starts=[False])

    def __call__(self, obs: np.ndarray) -> int:
        self.action = self.stepper.forward(torch.from_numpy(np.asarray(obs))[None])["action"]
        return int(self.action[0])
