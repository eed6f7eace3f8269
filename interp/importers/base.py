"""What the importers share: the :class:`Importer` record and the mapping of another library's weights onto an
agent."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.agents import Agent, Checkpoint, CheckpointError


@dataclass(frozen=True)
class Importer:
    name: str
    library: str
    recognises: Callable[[Path, object], bool]
    """whether a file (and what ``torch.load`` read of it, None for a file that is not a torch file) is this
    library's"""
    build: Callable[[Path, object], Checkpoint]
    """the agent and metadata, from the file and what was read of it"""
    step: re.Pattern
    """where the step is in the library's file names (one group)"""


def map_weights(agent: Agent, source: dict, names: dict[str, str], path: Path, what: str,
                ignored: tuple[str, ...] = ()) -> Agent:
    """Load the source's tensors into ``agent``: ``names`` maps each of the agent's parameter names to the source's.
    A state dict of another network (a name missing, a shape that differs, or a weight that is neither mapped nor
    known to be unused, i.e. starting with one of ``ignored``) is a :class:`CheckpointError`."""
    not_tensors = sorted(str(k) for k, v in source.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: not {what} (entries that are not tensors: {', '.join(not_tensors[:3])})")
    unknown = sorted(k for k in source if k not in set(names.values()) and not k.startswith(ignored))
    if unknown:
        raise CheckpointError(f"{path}: not {what}: it holds weights of layers this network does not have "
                              f"({', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}), e.g. a recurrent "
                              "policy's LSTM; they would be dropped silently")
    own = agent.state_dict()
    missing = sorted(theirs for ours, theirs in names.items() if theirs not in source)
    wrong = sorted(theirs for ours, theirs in names.items()
                   if theirs in source and tuple(source[theirs].shape) != tuple(own[ours].shape))
    if missing or wrong or set(own) - set(names):
        raise CheckpointError(f"{path}: not {what} ({'missing ' + ', '.join(missing[:3]) if missing else ''}"
                              f"{'; wrong shape ' + ', '.join(wrong[:3]) if wrong else ''})")
    agent.load_state_dict({ours: source[theirs].float() for ours, theirs in names.items()})
    return agent


NATURE_CNN = {"vision.net.0": 0, "vision.net.2": 2, "vision.net.4": 4}
"""our Nature CNN's convolutions -> their index in the libraries' ``nn.Sequential``"""


def gym_env_id(name: str | None) -> str | None:
    """``PongNoFrameskip-v4`` (the libraries' id) -> ``ALE/Pong-v5`` (with sticky actions off, as ``make_env``
    plays it: v4 NoFrameskip semantics); other ids unchanged."""
    if not name:
        return None
    match = re.fullmatch(r"(\w+?)NoFrameskip-v4", name)
    return f"ALE/{match.group(1)}-v5" if match else name
