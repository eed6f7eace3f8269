"""The network of TorchBeast's MonoBeast and PolyBeast (``AtariNet``), so that their checkpoints can be analysed.

Nature CNN over frames divided by 255 -> linear 512 with ReLU (F_c) -> with the clipped previous reward and the
one-hot previous action, optionally a 2-layer LSTM -> policy logits and value. Without the LSTM the heads read F_c
beside the reward and the action (ATOM reports what those take, see :mod:`interp.atom`); with it, F_c is the
LSTM's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.agents.base import ActorCritic, Agent, AgentConfig, State, reset_where
from interp.agents.layers import NatureCNN, lstm_cell, output_grid


@dataclass(frozen=True)
class AtariNetConfig(AgentConfig):
    scale_frames: bool = True
    """TorchBeast divides frames by 255"""
    hidden: int = 512
    """size of the fully connected layer after the convolutions"""
    use_lstm: bool = False
    """a 2-layer LSTM between the fully connected layer and the heads (TorchBeast's ``--use_lstm``)"""


class AtariNetAgent(Agent):
    """State: with the LSTM, ``(h, c)`` ``[B, 2, hidden + 1 + actions]`` each; none without."""

    name = "atarinet"
    Config = AtariNetConfig

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: AtariNetConfig):
        super().__init__(obs_shape, num_actions, config)
        self.vision = NatureCNN(obs_shape[0])
        height, width = output_grid(self.vision, obs_shape)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(self.vision.out_channels * height * width, config.hidden),
                                nn.ReLU())
        self.core_size = config.hidden + 1 + num_actions
        self.core = nn.ModuleList([lstm_cell(self.core_size, self.core_size) for _ in range(2)]) \
            if config.use_lstm else None
        self.actor_critic = ActorCritic(self.core_size, num_actions)

    def initial_state(self, batch_size: int) -> State:
        if self.core is None:
            return ()
        zeros = torch.zeros(batch_size, len(self.core), self.core_size, device=self.device, dtype=self.dtype)
        return zeros, zeros.clone()

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict, State]:
        steps, batch = inputs["frame"].shape[:2]
        features = self.fc(self.vision(self.frames(inputs))).view(steps, batch, -1)
        core_input = torch.cat([features if self.core is not None else self.hook_features(features),
                                self.reward(inputs)[..., None], self.last_action_one_hot(inputs)], dim=-1)
        if self.core is None:
            return self.outputs(*self.actor_critic(core_input)), ()
        h, c = state
        outputs = []
        for t in range(steps):
            h, c = reset_where(inputs["done"][t], h), reset_where(inputs["done"][t], c)
            layer_input, new_h, new_c = core_input[t], [], []
            for index, cell in enumerate(self.core):
                layer_input, layer_c = cell(layer_input, (h[:, index], c[:, index]))
                new_h.append(layer_input)
                new_c.append(layer_c)
            h, c = torch.stack(new_h, dim=1), torch.stack(new_c, dim=1)
            outputs.append(layer_input)
        return self.outputs(*self.actor_critic(self.hook_features(torch.stack(outputs)))), (h, c)
