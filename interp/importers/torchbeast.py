"""TorchBeast checkpoints (``model.tar``: ``model_state_dict``, ``flags``, and the optimizer's and scheduler's
state, which are not needed) of MonoBeast's and PolyBeast's ``AtariNet`` (``conv1-3``, ``fc``, an optional 2-layer
LSTM ``core``, ``policy``, ``baseline``): the ``atarinet`` agent. ``flags`` names the environment (``env``) and
``use_lstm``; TorchBeast's Atari observations are ``wrap_deepmind``'s (``preprocessing="deepmind"``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from interp.agents import Checkpoint, CheckpointError, make_agent
from interp.importers.base import Importer, gym_env_id, map_weights

REQUIRED = ("conv1.weight", "fc.weight", "policy.weight")
"""the tensors whose shapes size the agent"""


def recognises(path: Path, payload) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("model_state_dict"), dict)


def _lstm(weights: dict, layers: int = 2) -> dict:
    """nn.LSTM's ``weight_ih_l{k}``, ``weight_hh_l{k}`` and two biases -> one gate layer per cell over ``[x, h]``
    (the same gate order: input, forget, cell, output)."""
    combined = {}
    for layer in range(layers):
        combined[f"core.{layer}.gates.weight"] = torch.cat(
            [weights[f"core.weight_ih_l{layer}"], weights[f"core.weight_hh_l{layer}"]], dim=1)
        combined[f"core.{layer}.gates.bias"] = weights[f"core.bias_ih_l{layer}"] + weights[f"core.bias_hh_l{layer}"]
    return combined


def build(path: Path, payload) -> Checkpoint:
    weights, flags = payload["model_state_dict"], payload.get("flags")
    flags = flags if isinstance(flags, dict) else {}
    missing = [name for name in REQUIRED if not isinstance(weights.get(name), torch.Tensor)]
    if missing:
        raise CheckpointError(f"{path}: not a state dict of TorchBeast's AtariNet (no {', '.join(missing)} tensor)")
    use_lstm = "core.weight_ih_l0" in weights
    try:
        source = {**weights, **(_lstm(weights) if use_lstm else {})}
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not TorchBeast's AtariNet (its LSTM core is incomplete or not tensors: "
                              f"{error})") from None
    names = {f"vision.net.{index}.{kind}": f"conv{number}.{kind}" for number, index in ((1, 0), (2, 2), (3, 4))
             for kind in ("weight", "bias")}
    names.update({"fc.1.weight": "fc.weight", "fc.1.bias": "fc.bias", "actor_critic.policy.weight": "policy.weight",
                  "actor_critic.policy.bias": "policy.bias", "actor_critic.baseline.weight": "baseline.weight",
                  "actor_critic.baseline.bias": "baseline.bias"})
    if use_lstm:
        names.update({name: name for name in source if name.startswith("core.") and ".gates." in name})
    channels, actions = weights["conv1.weight"].shape[1], weights["policy.weight"].shape[0]
    agent = make_agent("atarinet", (channels, 84, 84), int(actions), use_lstm=use_lstm,
                       hidden=int(weights["fc.weight"].shape[0]))
    map_weights(agent, source, names, path, "TorchBeast's AtariNet",
                ignored=("core.weight_", "core.bias_") if use_lstm else ())
    meta = {"source": "torchbeast", "algorithm": "IMPALA", "preprocessing": "deepmind",
            "env": gym_env_id(flags.get("env")), "value": "critic"}
    return Checkpoint(agent, meta, path)


IMPORTER = Importer(name="torchbeast", library="TorchBeast", recognises=recognises, build=build,
                    step=re.compile(r"(\d+)(?!.*\d)"))
