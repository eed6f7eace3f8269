"""Stable-Baselines3 checkpoints (``model.save`` and ``CheckpointCallback``'s ``rl_model_<steps>_steps.zip``).

The zip holds ``policy.pth`` (a plain state dict, read with ``weights_only=True``) and ``data``, JSON whose
cloudpickled fields are never decoded: only its plain fields are read (the observation and action spaces' shape
and size, ``num_timesteps``, ``policy_kwargs``). PPO and A2C ``CnnPolicy`` (``features_extractor.cnn.{0,2,4}``,
``features_extractor.linear.0``, ``action_net``, ``value_net``; the shared extractor's copies under
``pi_features_extractor`` and ``vf_features_extractor``) become the ``baseline`` agent; DQN ``CnnPolicy``
(``q_net.features_extractor.*``, ``q_net.q_net.0``; the target network ``q_net_target`` ignored) becomes a
``baseline`` agent with a Q-value head. SB3's policies divide frames by 255 (``normalize_images``), and its Atari
observations are made by ``AtariWrapper`` and ``VecFrameStack`` (``preprocessing="sb3"``).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from pathlib import Path

import torch

from interp.agents import Checkpoint, CheckpointError, make_agent
from interp.agents.checkpoint import safe_load
from interp.importers.base import NATURE_CNN, Importer, map_weights


def is_sb3_zip(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return {"data", "policy.pth"} <= set(archive.namelist())


MEMBER_LIMITS = {"data": 16 * 2**20, "policy.pth": 512 * 2**20}
"""the largest ``data`` and ``policy.pth`` read, in bytes (an Atari CnnPolicy's are a few kB and ~13 MB)"""


def _member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """One member's bytes, its declared size, encryption and compression checked before anything is inflated (a
    zip bomb is refused, not inflated), and never more than its limit read."""
    info = archive.getinfo(name)
    limit = MEMBER_LIMITS[name]
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{path}: its {name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"{path}: its {name} is compressed with method {info.compress_type}, not one "
                              "Stable-Baselines3 writes (stored or deflated)")
    if info.file_size > limit:
        raise CheckpointError(f"{path}: its {name} would inflate to {info.file_size / 2**20:,.0f} MiB, more than "
                              f"the {limit / 2**20:.0f} MiB an Atari policy's takes")
    with archive.open(info) as member:
        content = member.read(limit + 1)
    if len(content) > limit:
        raise CheckpointError(f"{path}: its {name} inflates beyond its declared size")
    return content


def _read(path: Path) -> tuple[dict, dict]:
    """``data`` (plain JSON) and the policy's weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(_member(archive, "data", path))
            weights = safe_load(path, content=_member(archive, "policy.pth", path))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError, KeyError,
            EOFError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable Stable-Baselines3 file (a damaged archive: "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    if not isinstance(data, dict) or not isinstance(weights, dict):
        raise CheckpointError(f"{path}: not a Stable-Baselines3 file (no policy weights and data)")
    return data, weights


def _spaces(data: dict, path: Path) -> tuple[tuple[int, ...], int]:
    """The observations' shape ``(C, 84, 84)`` and the number of actions, checked before anything is built from
    them (a file's sizes are never allocated unchecked)."""
    try:
        shape = data["observation_space"]["_shape"]
        shape = json.loads(shape) if isinstance(shape, str) else shape
        actions = data["action_space"]["n"]
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: a Stable-Baselines3 file without image observations and discrete actions "
                              "(only Atari CnnPolicy agents are supported)") from None
    sizes = [_whole(size) for size in shape] if isinstance(shape, list) else []
    if not (len(sizes) == 3 and None not in sizes and 1 <= sizes[0] <= MAX_CHANNELS and sizes[1:] == [84, 84]):
        raise CheckpointError(f"{path}: observations of shape {shape!r}; the Nature CNN of CnnPolicy takes stacked "
                              f"84x84 frames (C, 84, 84) with C up to {MAX_CHANNELS}")
    if not 1 <= (_whole(actions) or 0) <= MAX_ACTIONS:
        raise CheckpointError(f"{path}: {actions!r} actions; an Atari game has 1 to {MAX_ACTIONS}")
    return tuple(sizes), _whole(actions)


MAX_ACTIONS = 18
"""the most actions an Atari game has (the full action set)"""
MAX_CHANNELS = 16


def _whole(value) -> int | None:
    """A whole number written as one (SB3 writes some as strings), else None."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _extractor(prefix: str) -> dict[str, str]:
    names = {f"{ours}.{kind}": f"{prefix}cnn.{index}.{kind}" for ours, index in NATURE_CNN.items()
             for kind in ("weight", "bias")}
    return {**names, "fc.1.weight": f"{prefix}linear.0.weight", "fc.1.bias": f"{prefix}linear.0.bias"}


def build(path: Path, payload=None) -> Checkpoint:
    data, weights = _read(path)
    if not any(".cnn." in key or key.startswith("cnn.") for key in weights):
        raise CheckpointError(f"{path}: a Stable-Baselines3 policy without a convolutional feature extractor "
                              "(MlpPolicy, say): not an image policy; only Atari CnnPolicy agents are supported")
    obs_shape, actions = _spaces(data, path)
    steps = _whole(data.get("num_timesteps", 0))
    if steps is None or steps < 0:
        raise CheckpointError(f"{path}: num_timesteps {data.get('num_timesteps')!r} is not a step count")
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else {}
    scale = bool(kwargs.get("normalize_images", True))
    if "q_net.q_net.0.weight" in weights:
        algorithm, head = "DQN", "q_values"
        names = {**_extractor("q_net.features_extractor."), "actor_critic.policy.weight": "q_net.q_net.0.weight",
                 "actor_critic.policy.bias": "q_net.q_net.0.bias"}
    else:
        if any(key.startswith("mlp_extractor.") for key in weights):
            raise CheckpointError(f"{path}: a policy with layers between the features and the heads (net_arch) is "
                                  "not supported; CnnPolicy's default is")
        shared = all(torch.equal(weights[key], weights.get(key.replace("pi_", "vf_"), weights[key]))
                     for key in weights if key.startswith("pi_features_extractor."))
        if not shared:
            raise CheckpointError(f"{path}: separate feature extractors for the actor and the critic are not "
                                  "supported (share_features_extractor=True is SB3's default)")
        algorithm = "PPO" if "clip_range" in data else "A2C"
        head = "actor_critic"
        names = {**_extractor("features_extractor."), "actor_critic.policy.weight": "action_net.weight",
                 "actor_critic.policy.bias": "action_net.bias", "actor_critic.baseline.weight": "value_net.weight",
                 "actor_critic.baseline.bias": "value_net.bias"}
    agent = make_agent("baseline", obs_shape, actions, scale_frames=scale, head=head)
    map_weights(agent, weights, names, path, f"a Stable-Baselines3 {algorithm} CnnPolicy with the Nature CNN",
                ignored=("pi_features_extractor.", "vf_features_extractor.", "q_net_target."))
    meta = {"source": "sb3", "algorithm": algorithm, "preprocessing": "sb3", "env": None,
            "value": "max_q" if head == "q_values" else "critic", "step": steps}
    return Checkpoint(agent, meta, path)


IMPORTER = Importer(name="sb3", library="Stable-Baselines3", recognises=lambda path, payload: payload is None
                    and is_sb3_zip(path), build=build, step=re.compile(r"rl_model_(\d+)_steps"))
