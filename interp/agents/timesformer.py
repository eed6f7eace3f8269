"""TimeSformer agents (thesis section 3.4): divided or joint space-time attention over patch tokens.

Patch embedding (hybrid: the IMPALA ResNet's grid cells, projected to ``embed_dim``; or a ``patch_size`` convolution)
plus learned Gaussian-initialised spatial position embeddings -> ``layers`` TimeSformer blocks with Transformer-XL
memory of earlier frames and a causal mask, one output per frame (no class token) -> LayerNorm, flatten, linear
``hidden`` -> with previous reward and action, policy and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.agents.base import ActorCritic, Agent, AgentConfig, State
from interp.agents.conservative import LayerNorm, proportional
from interp.agents.layers import ImpalaResNet, NatureCNN, output_grid
from interp.agents.transformer import run_in_chunks, timesformer_core
from interp.hooks import HookPoint

PATCH_EMBEDDINGS = ("resnet", "convnet", "conv")


@dataclass(frozen=True)
class TimeSformerConfig(AgentConfig):
    patch_embedding: str = "resnet"
    """``resnet`` (hybrid, thesis default: the IMPALA ResNet's grid), ``convnet`` (the grid of the first two Nature
    CNN convolutions, Mott et al.'s ConvNet: 9x9 on 84x84 frames) or ``conv`` (one convolution with kernel and
    stride ``patch_size``)"""
    resnet_channels: tuple[int, ...] = (16, 32, 32)
    """channels of the ResNet patch embedding's stages"""
    patch_size: int = 7
    embed_dim: int = 16
    heads: int = 4
    layers: int = 1
    hidden: int = 256
    mem_len: int = 16
    """frames of memory each frame attends to"""
    chunk_size: int = 80
    """frames per core call when learning on long unrolls; the outputs do not depend on it (windowed memory)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch_embedding not in PATCH_EMBEDDINGS:
            raise ValueError(f"patch_embedding must be one of {PATCH_EMBEDDINGS}, got {self.patch_embedding!r}")


class TimeSformerAgent(Agent):
    """State: memory ``[B, layers, M, N, embed_dim]`` and its validity ``[B, M]``."""

    block: str
    Config = TimeSformerConfig

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: TimeSformerConfig):
        super().__init__(obs_shape, num_actions, config)
        if config.patch_embedding in ("resnet", "convnet"):
            vision = (ImpalaResNet(obs_shape[0], tuple(config.resnet_channels)) if config.patch_embedding == "resnet"
                      else NatureCNN(obs_shape[0], 2))
            self.patch_embed = nn.Sequential(vision, nn.Conv2d(vision.out_channels, config.embed_dim, 1))
        else:
            self.patch_embed = nn.Conv2d(obs_shape[0], config.embed_dim, config.patch_size, config.patch_size)
        self.grid = output_grid(self.patch_embed, obs_shape)
        patches = self.grid[0] * self.grid[1]
        self.position = nn.Parameter(torch.randn(patches, config.embed_dim) * 0.02)
        self.hook_position = HookPoint("constant")
        self.core = timesformer_core(self.block, config.embed_dim, config.layers, config.heads, config.mem_len,
                                     self.grid, obs_shape[-1])
        self.norm = LayerNorm(config.embed_dim)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(patches * config.embed_dim, config.hidden), nn.ReLU())
        self.actor_critic = ActorCritic(config.hidden + 1 + num_actions, num_actions)

    def initial_state(self, batch_size: int) -> State:
        return self.core.initial_state(batch_size)

    @property
    def state_horizon(self) -> int | None:
        return self.core.horizon  # the core's inputs come from the step alone

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict, State]:
        steps, batch = inputs["frame"].shape[:2]
        patches = self.patch_embed(self.frames(inputs)).flatten(2).transpose(1, 2)  # [T*B, N, D]
        position = self.hook_position(self.position.expand_as(patches))
        tokens = proportional(lambda patches, position: patches + position, patches, position)
        tokens = tokens.view(steps, batch, *tokens.shape[1:])
        encoded, memory, valid = run_in_chunks(self.core, tokens, inputs["done"], *state, self.config.chunk_size)
        hidden = self.hook_features(self.project(self.norm(encoded).flatten(0, 1)).view(steps, batch, -1))
        features = torch.cat([hidden, self.reward(inputs)[..., None], self.last_action_one_hot(inputs)], dim=-1)
        return self.outputs(*self.actor_critic(features)), (memory, valid)


class DividedSpaceTimeAgent(TimeSformerAgent):
    name = "timesformer_divided"
    block = "divided"


@dataclass(frozen=True)
class JointConfig(TimeSformerConfig):
    mem_len: int = 10
    chunk_size: int = 2
    """frames per core call: its weights are ``[B, 1, heads, chunk x patches, (mem_len + chunk) x patches]``, and
    a frame's queries use ``mem_len + 1`` frames' keys of them, so 2 leaves 1 frame of 12 unused where 10 (the
    thesis's) leaves 9 of 20; the learner's update (ALE Pong, 42x42, bf16, one thread, AMD EPYC) took 401 ms
    against 713"""


class JointSpaceTimeAgent(TimeSformerAgent):
    name = "timesformer_joint"
    block = "joint"
    Config = JointConfig
