"""Checkpoints: the architecture, its config and the weights in one file, loaded without executing code.

Files are written atomically (a temporary file in the same folder, then renamed), so an interrupted write never
leaves a half-written checkpoint under the final name. Loading uses ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.agents.base import Agent
from interp.errors import UserError
from interp.files import atomic_path

FORMAT = "interp-agent-checkpoint"
VERSION = 1
_META_TYPES = (str, int, float, bool, type(None), torch.Tensor)


class CheckpointError(UserError):
    """A file that cannot be loaded as an agent checkpoint."""


@dataclass
class Checkpoint:
    agent: Agent
    meta: dict
    path: Path


def save_checkpoint(path: str | os.PathLike, agent: Agent, **meta) -> Path:
    """Write ``agent`` (architecture, config, weights) and ``meta`` (numbers, strings, tensors, and lists or dicts
    of them, e.g. ``step=1000``) to ``path`` atomically."""
    _check_meta(meta)
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, "agent": agent.describe(),
               "state_dict": {k: v.detach().cpu() for k, v in agent.state_dict().items()}, "meta": meta}
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    return path


def load_checkpoint(path: str | os.PathLike, *, expected_name: str | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the agent stored in ``path`` (in eval mode) with its metadata.

    Raises:
        CheckpointError: missing file, a corrupt file or one that is not a checkpoint, an unknown architecture,
            weights that do not fit the architecture, or an architecture other than ``expected_name``.
    """
    from interp.agents import AGENTS, make_agent

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    payload = safe_load(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an interp agent checkpoint")
    description, state_dict, meta = payload.get("agent"), payload.get("state_dict"), payload.get("meta", {})
    if not (isinstance(description, dict) and isinstance(state_dict, dict) and isinstance(meta, dict)
            and isinstance(description.get("config", {}), dict)):
        raise CheckpointError(f"{path}: an interp checkpoint without its agent description, weights or metadata")
    name = description.get("name")
    if name not in AGENTS:
        raise CheckpointError(f"{path}: unknown architecture {name!r} (known: {', '.join(AGENTS)})")
    if expected_name is not None and name != expected_name:
        raise CheckpointError(f"{path}: holds a {name!r} agent, not {expected_name!r}")
    problem = _size_problem(description)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        agent = make_agent(name, tuple(description["obs_shape"]), int(description["num_actions"]),
                           **description.get("config", {}))
    except (UserError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its config does not build a {name!r} agent ({error})") from None
    _load_weights(agent, state_dict, path)
    agent.to(map_location).eval()
    return Checkpoint(agent, meta, path)


MAX_ACTIONS, MAX_CHANNELS, MAX_SIDE = 18, 16, 256


def _size_problem(description: dict) -> str:
    """What is wrong with the sizes a checkpoint's description gives, checked before they are allocated."""
    shape, actions = description.get("obs_shape"), description.get("num_actions")
    whole = [s for s in shape if isinstance(s, int) and not isinstance(s, bool)] if isinstance(shape, list) else []
    if len(whole) != 3 or len(shape) != 3 or not (1 <= whole[0] <= MAX_CHANNELS and 8 <= whole[1] <= MAX_SIDE
                                                  and whole[1] == whole[2]):
        return (f"observations of shape {shape!r}; an agent takes [C, S, S] with C up to {MAX_CHANNELS} and S from 8 "
                f"to {MAX_SIDE}")
    if not (isinstance(actions, int) and not isinstance(actions, bool) and 1 <= actions <= MAX_ACTIONS):
        return f"{actions!r} actions; an Atari game has 1 to {MAX_ACTIONS}"
    return ""


def safe_load(path: Path, map_location: str | torch.device = "cpu", *, mmap: bool = False,
              content: bytes | None = None):
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers of them, never code. A file
    that is not that (corrupt, truncated, or a pickle that asks to run code) is a :class:`CheckpointError`.
    ``mmap``: tensors are mapped, not read, until used (only the zip format of torch >= 1.6 can be; a file in the
    older format, as TorchBeast-era PyTorch wrote it, is read whole). ``content``: the bytes to read instead of the
    file (a member of an archive), ``path`` then only naming them in errors."""
    try:
        source = io.BytesIO(content) if content is not None else path
        mmap = mmap and content is None and zipfile.is_zipfile(path)
        return torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        # torch's message goes on to suggest loading it unsafely: never repeated. A pickle naming a GLOBAL asks for
        # objects beyond weights; anything else it cannot read (zeroed or random bytes) is simply not a checkpoint
        if "GLOBAL" in str(error):
            raise CheckpointError(f"{path}: refused: it holds more than weights (a pickle of other objects, which "
                                  "could run code when loaded)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or not a torch file)") from None
    except Exception as error:  # torch raises many kinds for bad bytes
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt, truncated or not a torch file: "
                              f"{reason})") from None


def load_agent(path: str | os.PathLike, *, expected_name: str | None = None,
               map_location: str | torch.device = "cpu") -> Agent:
    """The agent of any checkpoint this toolkit reads (eval mode): its own, and those of Stable-Baselines3, CleanRL
    and TorchBeast (:func:`interp.importers.load_any`, which also returns the metadata)."""
    from interp.importers import load_any

    return load_any(path, expected_name=expected_name).agent.to(map_location)


LEGACY_NAMES = {"heads.": "actor_critic."}
"""weight-name prefixes of earlier checkpoints -> today's (the policy and value head was called ``heads``)"""


def renamed(state_dict: dict, own: dict, path: Path) -> dict:
    """``state_dict`` with the weight names of earlier checkpoints (:data:`LEGACY_NAMES`) mapped onto today's names in
    ``own``; one that holds both an old and a new name of the same part is a :class:`CheckpointError` (which of the
    two to load could only be guessed)."""
    for old, new in LEGACY_NAMES.items():
        if any(k.startswith(old) for k in state_dict) and any(k.startswith(new) for k in state_dict):
            raise CheckpointError(f"{path}: holds both {old}* and {new}* weights of the same layers (an older and a "
                                  "newer name); which to load is not clear")
        state_dict = {(new + k[len(old):] if k.startswith(old) and new + k[len(old):] in own else k): v
                      for k, v in state_dict.items()}
    return state_dict


def _load_weights(agent: Agent, state_dict: dict, path: Path) -> None:
    own = agent.state_dict()
    state_dict = renamed(state_dict, own, path)
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mismatched:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
                 if keys]
        raise CheckpointError(f"{path}: the weights do not fit the {agent.name!r} architecture ({'; '.join(parts)})")
    agent.load_state_dict(state_dict)


def _check_meta(value, where: str = "meta") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
            _check_meta(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_meta(item, f"{where}[{index}]")
    elif not isinstance(value, _META_TYPES):
        raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a checkpoint loaded with "
                        "weights_only=True; use numbers, strings, tensors, lists and dicts")
