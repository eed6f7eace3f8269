"""Mott et al. (2019) spatial attention agent, as in thesis section 3.1.

vision CNN -> ConvLSTM -> keys (8 channels) and values (120 channels), each with the 64-channel spatial basis
-> 4 queries from the previous LSTM output through an MLP -> spatial softmax attention -> answers, queries,
previous reward and previous action through a two-layer MLP (512, 256) -> LSTM(256) -> policy and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.agents.base import ActorCritic, Agent, AgentConfig, State, reset_where
from interp.agents.conservative import LayerNorm
from interp.agents.layers import ImpalaResNet, NatureCNN, SpatialAttention, conv_lstm_cell, lstm_cell, output_grid

VISIONS = ("resnet", "convnet")


@dataclass(frozen=True)
class MottConfig(AgentConfig):
    vision: str = "resnet"
    """``resnet`` (IMPALA ResNet, default) or ``convnet`` (two convolutions of the Nature CNN)"""
    vision_norm: bool = False
    """layer-normalise each frame's vision features (all channels and cells together) before the ConvLSTM (ours,
    not Mott's): the ResNet's features reach a mean magnitude of ~10 at initialisation and grow in training, so
    the ConvLSTM's gates saturate and the gradient from the policy to the frame vanishes (``docs/study/pong``)"""
    key_channels: int = 8
    value_channels: int = 120
    heads: int = 4
    """number of attention queries"""
    query_hidden: int = 256
    answer_hidden: int = 512
    core: int = 256
    """LSTM size"""
    core_norm: bool = False
    """layer-normalise the answer network's output before the LSTM (ours, not Mott's): with ``vision_norm`` alone,
    that output grew 30x in training until the LSTM's gates saturated in turn (``docs/study/pong``)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vision not in VISIONS:
            raise ValueError(f"vision must be one of {VISIONS}, got {self.vision!r}")


def build_vision(kind: str, in_channels: int) -> nn.Module:
    return ImpalaResNet(in_channels) if kind == "resnet" else NatureCNN(in_channels, layers=2)


class AttentionAnswerer(nn.Module):
    """Queries from a core output, Mott attention over keys/values, and the answer MLP. Shared by the Mott and
    spatio-temporal agents. Answers ``[B, core]`` from ``query_source [B, core]``, keys and values."""

    def __init__(self, grid: tuple[int, int], image_size: int, config, num_actions: int):
        super().__init__()
        self.attention = SpatialAttention(grid, image_size)
        basis = self.attention.basis_channels
        self.heads, self.query_size = config.heads, config.key_channels + basis
        self.query = nn.Sequential(nn.Linear(config.core, config.query_hidden), nn.ReLU(),
                                   nn.Linear(config.query_hidden, config.heads * self.query_size))
        answer_in = config.heads * (config.value_channels + basis) + config.heads * self.query_size + 1 + num_actions
        self.answer = nn.Sequential(nn.Linear(answer_in, config.answer_hidden), nn.ReLU(),
                                    nn.Linear(config.answer_hidden, config.core), nn.ReLU())

    def forward(self, query_source: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, reward: torch.Tensor,
                last_action: torch.Tensor) -> torch.Tensor:
        queries = self.query(query_source).view(-1, self.heads, self.query_size)
        answers, _ = self.attention(queries, keys, values)
        return self.answer(torch.cat([answers.flatten(1), queries.flatten(1), reward[:, None], last_action], dim=1))


class MottAgent(Agent):
    """State: ConvLSTM ``(h, c)`` ``[B, 128, h, w]`` and LSTM ``(h, c)`` ``[B, 256]``."""

    name = "mott"
    Config = MottConfig

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: MottConfig):
        super().__init__(obs_shape, num_actions, config)
        self.vision = build_vision(config.vision, obs_shape[0])
        self.grid = output_grid(self.vision, obs_shape)
        features = self.vision.out_channels * self.grid[0] * self.grid[1]
        self.vision_norm = LayerNorm(features) if config.vision_norm else nn.Identity()
        self.split = (config.key_channels, config.value_channels)
        self.conv_lstm = conv_lstm_cell(self.vision.out_channels, sum(self.split))
        self.answerer = AttentionAnswerer(self.grid, obs_shape[-1], config, num_actions)
        self.core_norm = LayerNorm(config.core) if config.core_norm else nn.Identity()
        self.core = lstm_cell(config.core, config.core)
        self.actor_critic = ActorCritic(config.core, num_actions)

    def initial_state(self, batch_size: int) -> State:
        conv = torch.zeros(batch_size, sum(self.split), *self.grid, device=self.device, dtype=self.dtype)
        core = torch.zeros(batch_size, self.config.core, device=self.device, dtype=self.dtype)
        return conv, conv.clone(), core, core.clone()

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict, State]:
        steps, batch = inputs["frame"].shape[:2]
        features = self.vision_norm(self.vision(self.frames(inputs)).flatten(1)).view(steps, batch, -1, *self.grid)
        last_action, reward = self.last_action_one_hot(inputs), self.reward(inputs)
        conv_h, conv_c, core_h, core_c = state
        outputs = []
        for t in range(steps):
            done = inputs["done"][t]
            conv_h, conv_c, core_h, core_c = (reset_where(done, s) for s in (conv_h, conv_c, core_h, core_c))
            conv_h, conv_c = self.conv_lstm(features[t], (conv_h, conv_c))
            keys, values = conv_h.split(self.split, dim=1)
            core_input = self.core_norm(self.answerer(core_h, keys, values, reward[t], last_action[t]))
            core_h, core_c = self.core(core_input, (core_h, core_c))
            outputs.append(core_h)
        logits, baseline = self.actor_critic(self.hook_features(torch.stack(outputs)))
        return self.outputs(logits, baseline), (conv_h, conv_c, core_h, core_c)
