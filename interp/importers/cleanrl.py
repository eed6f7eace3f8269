"""CleanRL checkpoints: the state dict of ``ppo_atari``'s ``Agent`` (``network.{0,2,4,7}``, ``actor``, ``critic``)
or of ``dqn_atari``'s ``QNetwork`` (``network.{0,2,4,7,9}``), as ``torch.save(model.state_dict(), ...)`` writes it
(``.cleanrl_model``), or in the ``{"model_weights": ..., "args": ...}`` form of some scripts, whose ``args`` may name
the environment. Both networks divide frames by 255 (the ``baseline`` agent, with a Q-value head for the DQN), and
CleanRL's Atari observations are made by its wrappers (``preprocessing="cleanrl"``).
"""

from __future__ import annotations

import re
from pathlib import Path

from interp.agents import Checkpoint, CheckpointError, make_agent
from interp.importers.base import NATURE_CNN, Importer, gym_env_id, map_weights
from interp.importers.sb3 import MAX_ACTIONS


def _weights_and_args(payload) -> tuple[dict | None, dict]:
    if isinstance(payload, dict) and isinstance(payload.get("model_weights"), dict):
        args = payload.get("args")
        return payload["model_weights"], args if isinstance(args, dict) else {}
    return (payload, {}) if isinstance(payload, dict) else (None, {})


def recognises(path: Path, payload) -> bool:
    weights, _ = _weights_and_args(payload)
    return weights is not None and "network.0.weight" in weights


def build(path: Path, payload) -> Checkpoint:
    weights, args = _weights_and_args(payload)
    names = {f"{ours}.{kind}": f"network.{index}.{kind}" for ours, index in NATURE_CNN.items()
             for kind in ("weight", "bias")}
    names.update({"fc.1.weight": "network.7.weight", "fc.1.bias": "network.7.bias"})
    if "network.9.weight" in weights:
        algorithm, head = "DQN", "q_values"
        names.update({"actor_critic.policy.weight": "network.9.weight", "actor_critic.policy.bias": "network.9.bias"})
        actions = weights["network.9.weight"].shape[0]
    elif "actor.weight" in weights:
        algorithm, head = "PPO", "actor_critic"
        names.update({"actor_critic.policy.weight": "actor.weight", "actor_critic.policy.bias": "actor.bias",
                      "actor_critic.baseline.weight": "critic.weight", "actor_critic.baseline.bias": "critic.bias"})
        actions = weights["actor.weight"].shape[0]
    else:
        raise CheckpointError(f"{path}: not a state dict of CleanRL's ppo_atari Agent or dqn_atari QNetwork")
    if args.get("n_atoms") or not 1 <= actions <= MAX_ACTIONS:
        atoms = f", n_atoms {args['n_atoms']}" if args.get("n_atoms") else ""
        raise CheckpointError(f"{path}: {actions} outputs{atoms}, where an Atari game has 1 to {MAX_ACTIONS} "
                              "actions: a distributional Q-network (CleanRL's c51_atari, actions x atoms) is not "
                              "supported")
    channels = weights["network.0.weight"].shape[1]
    agent = make_agent("baseline", (channels, 84, 84), int(actions), scale_frames=True, head=head)
    map_weights(agent, weights, names, path, f"CleanRL's {algorithm} network for Atari")
    meta = {"source": "cleanrl", "algorithm": algorithm, "preprocessing": "cleanrl",
            "env": gym_env_id(args.get("env_id")), "value": "max_q" if head == "q_values" else "critic"}
    return Checkpoint(agent, meta, path)


IMPORTER = Importer(name="cleanrl", library="CleanRL", recognises=recognises, build=build,
                    step=re.compile(r"(\d+)(?!.*\d)"))
