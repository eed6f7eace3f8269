"""The agent zoo: one registry of architectures, one interface (see :mod:`interp.agents.base`), checkpoints.

>>> agent = make_agent("mott", obs_shape=(4, 84, 84), num_actions=6)
>>> state = agent.initial_state(batch_size=2)
>>> outputs, state = agent(inputs, state)   # inputs: frame [T, B, 4, 84, 84], last_action, reward, done
"""

from __future__ import annotations

import difflib
from dataclasses import fields

import torch

from interp.agents.adaptive import AdaptiveAgent
from interp.agents.atarinet import AtariNetAgent
from interp.agents.base import Agent, AgentConfig, State, orthogonal_init_
from interp.agents.baseline import BaselineAgent
from interp.agents.checkpoint import Checkpoint, CheckpointError, load_agent, load_checkpoint, save_checkpoint
from interp.agents.mott import MottAgent
from interp.agents.spatiotemporal import SpatioTemporalAgent, SpatioTemporalOneShotAgent
from interp.agents.timesformer import DividedSpaceTimeAgent, JointSpaceTimeAgent
from interp.errors import UserError

AGENTS: dict[str, type[Agent]] = {
    cls.name: cls
    for cls in (BaselineAgent, MottAgent, AdaptiveAgent, SpatioTemporalAgent, SpatioTemporalOneShotAgent,
                DividedSpaceTimeAgent, JointSpaceTimeAgent, AtariNetAgent)
}


def make_agent(name: str, obs_shape: tuple[int, int, int] = (4, 84, 84), num_actions: int = 6, *,
               seed: int | None = None, **config) -> Agent:
    """Build an agent by architecture name; ``config`` are the fields of that agent's ``Config``. ``seed``: draw the
    initial weights from this seed (the caller's random state is left as it was); None: from torch's global random
    state, as ``nn.Module`` constructors do."""
    if name not in AGENTS:
        close = difflib.get_close_matches(name, AGENTS, n=2)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UserError(f"unknown architecture {name!r}{hint} (known: {', '.join(AGENTS)})")
    cls = AGENTS[name]
    allowed = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise UserError(f"unknown option(s) {unknown} for {name}; allowed: {', '.join(sorted(allowed))}")
    try:
        agent_config = cls.Config(**config)
    except (TypeError, ValueError) as error:
        raise UserError(f"bad option for {name}: {error}") from None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.random.default_generator.manual_seed(seed)
        agent = cls(tuple(obs_shape), num_actions, agent_config)
        return orthogonal_init_(agent) if agent_config.init == "orthogonal" else agent


__all__ = ["AGENTS", "Agent", "AgentConfig", "Checkpoint", "CheckpointError", "State", "load_agent",
           "load_checkpoint", "make_agent", "save_checkpoint"]
