"""Feed-forward baseline: the Nature CNN with one hidden layer, the network shape of the ATOM paper."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.agents.base import ActorCritic, Agent, AgentConfig, State
from interp.agents.layers import NatureCNN, output_grid


@dataclass(frozen=True)
class BaselineConfig(AgentConfig):
    hidden: int = 512
    """size of the fully connected layer F_c that feeds the heads"""
    head: str = "actor_critic"
    """``actor_critic``: policy logits and a value; ``q_values``: action values (a DQN, see
    :class:`interp.agents.base.ActorCritic`)"""


class BaselineAgent(Agent):
    """conv 32@8/4 -> 64@4/2 -> 64@3/1 -> linear ``hidden`` (F_c) -> policy logits and value (or Q-values). No
    memory. With ``scale_frames``, the network of Stable-Baselines3's and CleanRL's Atari policies."""

    name = "baseline"
    Config = BaselineConfig

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: BaselineConfig):
        super().__init__(obs_shape, num_actions, config)
        self.vision = NatureCNN(obs_shape[0])
        height, width = output_grid(self.vision, obs_shape)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(self.vision.out_channels * height * width, config.hidden),
                                nn.ReLU())
        self.actor_critic = ActorCritic(config.hidden, num_actions, config.head)

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict, State]:
        steps, batch = inputs["frame"].shape[:2]
        features = self.hook_features(self.fc(self.vision(self.frames(inputs))))
        logits, baseline = self.actor_critic(features)
        return self.outputs(logits.view(steps, batch, -1), baseline.view(steps, batch)), ()
