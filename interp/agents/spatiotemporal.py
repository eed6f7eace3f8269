"""Spatio-temporal attention (thesis section 3.3): Mott spatial attention feeding a Transformer-XL core.

IMPALA ResNet -> 1x1 convolution to keys (8) and values (120) -> 4 queries from the previous core output, layer
normalised -> spatial attention -> answer MLP (with previous reward and action) -> Transformer-XL -> policy and value.

The normalisation is ours, not the thesis's. The queries close a loop over a whole episode (core output -> queries
-> answer -> core output) in which nothing is bounded: the answer MLP ends in a ReLU and the gated core passes its
input on, so a loop gain above 1 grows the core output geometrically. At initialisation the gain is just below 1
(the core output's norm stays at 60-80 over 3,000 Pong steps); with the query and answer MLPs' weights 1.5 times
larger it is inf within 100 steps. Our sequential agent diverged so on ALE Pong at 1.12M steps (value loss 1e6,
then NaN; ``docs/study/pong``, whose ``query_loop.py`` measures the loop). Mott's loop is bounded by its LSTM's
tanh; here a LayerNorm bounds it.

The sequential agent computes each step's queries from its own previous core output, so a learner must go step
by step. The one-shot agent (thesis fig. 3.8 right) takes the query source of every step from the rollout
(``query_state``: the core output the actor had before that step, which the actor emits), so the spatial
attention of a whole unroll is computed in parallel; without ``query_state`` it acts like the sequential one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.agents.adaptive import TransformerXLConfig
from interp.agents.base import ActorCritic, Agent, State, reset_where
from interp.agents.conservative import LayerNorm
from interp.agents.layers import ImpalaResNet, output_grid
from interp.agents.mott import AttentionAnswerer
from interp.agents.transformer import CoreSteps, run_in_chunks, transformer_xl_core


@dataclass(frozen=True)
class SpatioTemporalConfig(TransformerXLConfig):
    key_channels: int = 8
    value_channels: int = 120
    heads: int = 4
    """spatial attention queries"""
    query_hidden: int = 256
    answer_hidden: int = 512

    @property
    def core(self) -> int:
        return self.dim


class SpatioTemporalAgent(Agent):
    """State: Transformer-XL memory ``[B, layers, M, dim]``, its validity ``[B, M]`` and the previous core output
    ``[B, dim]`` (the query source)."""

    name = "spatiotemporal"
    Config = SpatioTemporalConfig

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: SpatioTemporalConfig):
        super().__init__(obs_shape, num_actions, config)
        self.vision = ImpalaResNet(obs_shape[0])
        self.grid = output_grid(self.vision, obs_shape)
        self.split = (config.key_channels, config.value_channels)
        self.keys_values = nn.Conv2d(self.vision.out_channels, sum(self.split), 1)
        self.query_norm = LayerNorm(config.dim)
        self.answerer = AttentionAnswerer(self.grid, obs_shape[-1], config, num_actions)
        self.core = transformer_xl_core(config.dim, config.layers, config.attention_heads, config.inner_dim,
                                        config.mem_len, config.gating)
        self.actor_critic = ActorCritic(config.dim, num_actions)

    def initial_state(self, batch_size: int) -> State:
        memory, valid = self.core.initial_state(batch_size)
        return memory, valid, torch.zeros(batch_size, self.config.dim, device=self.device, dtype=self.dtype)

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict, State]:
        steps, batch = inputs["frame"].shape[:2]
        keys, values = self.keys_values(self.vision(self.frames(inputs))).split(self.split, dim=1)
        keys, values = keys.view(steps, batch, *keys.shape[1:]), values.view(steps, batch, *values.shape[1:])
        last_action, reward, done = self.last_action_one_hot(inputs), self.reward(inputs), inputs["done"]
        memory, valid, previous = state
        if "query_state" in inputs:  # one-shot: all queries from the actor's stored core outputs
            query_state = inputs["query_state"]
            core_input = self.answerer(self.query_norm(query_state.flatten(0, 1)), keys.flatten(0, 1),
                                       values.flatten(0, 1), reward.flatten(),
                                       last_action.flatten(0, 1)).view(steps, batch, -1)
            core, memory, valid = run_in_chunks(self.core, core_input, done, memory, valid, self.config.chunk_size)
            previous = core[-1]
        else:  # sequential: each step's queries from the previous step's core output
            core_steps = CoreSteps(self.core, memory, valid)
            outputs, sources = [], []
            for t in range(steps):
                previous = reset_where(done[t], previous)
                sources.append(previous)
                core_input = self.answerer(self.query_norm(previous), keys[t], values[t], reward[t], last_action[t])
                previous = core_steps(core_input, done[t])
                outputs.append(previous)
            core, query_state = torch.stack(outputs), torch.stack(sources)
            memory, valid = core_steps.memory, core_steps.valid
        extra = {"query_state": query_state} if self.extra_inputs else {}
        return self.outputs(*self.actor_critic(self.hook_features(core)), **extra), (memory, valid, previous)


class SpatioTemporalOneShotAgent(SpatioTemporalAgent):
    name = "spatiotemporal_oneshot"
    extra_inputs = {"query_state": "float [T, B, dim]: the core output the actor had before each step"}
