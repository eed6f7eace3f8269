"""Adaptive architecture (thesis section 3.2; Kumar et al.): temporal attention with a Transformer-XL core.

IMPALA ResNet -> flatten -> linear ``embed`` -> with previous reward and action, a linear map to ``dim`` ->
stable gated Transformer-XL over the memory of earlier steps -> policy and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.agents.base import ActorCritic, Agent, AgentConfig, State
from interp.agents.layers import ImpalaResNet, output_grid
from interp.agents.transformer import run_in_chunks, transformer_xl_core


@dataclass(frozen=True)
class TransformerXLConfig(AgentConfig):
    """Options of the Transformer-XL core shared by the adaptive and spatio-temporal agents."""

    dim: int = 256
    layers: int = 1
    attention_heads: int = 4
    inner_dim: int = 256
    """feed-forward size"""
    gating: bool = True
    """GRU gating (GTrXL) instead of plain residuals"""
    mem_len: int = 80
    """steps of memory each step attends to"""
    chunk_size: int = 80
    """steps per core call when learning on long unrolls"""


@dataclass(frozen=True)
class AdaptiveConfig(TransformerXLConfig):
    embed: int = 256


class AdaptiveAgent(Agent):
    """State: Transformer-XL memory ``[B, layers, M, dim]`` and its validity ``[B, M]``."""

    name = "adaptive"
    Config = AdaptiveConfig

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: AdaptiveConfig):
        super().__init__(obs_shape, num_actions, config)
        self.vision = ImpalaResNet(obs_shape[0])
        height, width = output_grid(self.vision, obs_shape)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(self.vision.out_channels * height * width, config.embed),
                                   nn.ReLU())
        self.core_input = nn.Linear(config.embed + 1 + num_actions, config.dim)
        self.core = transformer_xl_core(config.dim, config.layers, config.attention_heads, config.inner_dim,
                                        config.mem_len, config.gating)
        self.actor_critic = ActorCritic(config.dim, num_actions)

    def initial_state(self, batch_size: int) -> State:
        return self.core.initial_state(batch_size)

    @property
    def state_horizon(self) -> int | None:
        return self.core.horizon  # the core's inputs come from the step alone

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict, State]:
        steps, batch = inputs["frame"].shape[:2]
        embedded = self.embed(self.vision(self.frames(inputs))).view(steps, batch, -1)
        x = self.core_input(torch.cat([embedded, self.reward(inputs)[..., None], self.last_action_one_hot(inputs)], -1))
        core, memory, valid = run_in_chunks(self.core, x, inputs["done"], *state, self.config.chunk_size)
        return self.outputs(*self.actor_critic(self.hook_features(core))), (memory, valid)
