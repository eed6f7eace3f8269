"""An agent as a policy over single observations, for behavioural tests such as the dual-ball probe."""

from __future__ import annotations

import numpy as np
import torch

from interp.agents.base import Agent


class AgentPolicy:
    """``policy(obs) -> action`` for an agent that needs its state, previous action and reward: call ``reset()`` at
    each episode start and ``observe(reward)`` after each step. Greedy (the most likely action) by default."""

    def __init__(self, agent: Agent, greedy: bool = True):
        self.agent = agent.eval() if greedy else agent.train()
        self.reset()

    def reset(self) -> None:
        self.state = self.agent.initial_state(1)
        self.last_action, self.reward, self.done = 0, 0.0, True

    def observe(self, reward: float) -> None:
        self.reward = float(reward)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> int:
        inputs = {"frame": torch.from_numpy(np.asarray(obs))[None, None].to(self.agent.device),
                  "last_action": torch.tensor([[self.last_action]], device=self.agent.device),
                  "reward": torch.tensor([[self.reward]], device=self.agent.device),
                  "done": torch.tensor([[self.done]], device=self.agent.device)}
        outputs, self.state = self.agent(inputs, self.state)
        self.last_action, self.done = int(outputs["action"][0, 0]), False
        return self.last_action
