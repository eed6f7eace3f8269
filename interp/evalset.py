"""Fixed evaluation sets: frames with object masks and the history before each, replayed by every checkpoint.

An evaluation set file (``.npz``) holds, for ``N`` frames:

- ``obs`` uint8 ``[N, 4, S, S]``: the observations evaluated;
- ``last_action`` int64 ``[N]``, ``reward`` float32 ``[N]``, ``done`` bool ``[N]``: the rest of each step's inputs;
- ``action`` int64 ``[N]``: what the reference policy did there;
- ``masks/<object>`` bool ``[N, S, S]``: object masks of the newest frame;
- ``rgb`` uint8 ``[N, H, W, 3]``: the raw frames, for overlays;
- ``context/obs`` uint8 ``[N, C, 4, S, S]``, ``context/last_action``, ``context/reward``, ``context/done``
  ``[N, C]``: the ``C`` steps before each frame (``context/done[:, 0]`` is True: the state starts there), so that
  every checkpoint of a recurrent or memory agent builds its own state on the same history;
- ``meta``: a JSON string (environment id, seed, reference checkpoint, frame size).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from interp.errors import UserError
from interp.files import atomic_path
from interp.steps import Steps


@dataclass
class EvalSet:
    obs: np.ndarray
    last_action: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    action: np.ndarray
    masks: dict[str, np.ndarray]
    rgb: np.ndarray
    context: dict[str, np.ndarray]
    meta: dict

    def __len__(self) -> int:
        return len(self.obs)

    @property
    def env(self) -> str:
        return self.meta["env"]

    def subset(self, indices) -> EvalSet:
        """The frames at ``indices`` (a slice or index array)."""
        return EvalSet(self.obs[indices], self.last_action[indices], self.reward[indices], self.done[indices],
                       self.action[indices], {k: v[indices] for k, v in self.masks.items()}, self.rgb[indices],
                       {k: v[indices] for k, v in self.context.items()}, self.meta)

    def step_inputs(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The evaluated step of every frame as agent inputs with ``T = 1``, ``B = N``."""
        return {"frame": torch.from_numpy(self.obs)[None].to(device),
                "last_action": torch.from_numpy(self.last_action)[None].to(device),
                "reward": torch.from_numpy(self.reward)[None].to(device),
                "done": torch.from_numpy(self.done)[None].to(device)}

    def context_inputs(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The context steps as time-major agent inputs ``[C, N, ...]``."""
        return {"frame": torch.from_numpy(self.context["obs"]).transpose(0, 1).to(device),
                **{key: torch.from_numpy(self.context[key]).T.to(device)
                   for key in ("last_action", "reward", "done")}}

    def steps(self, agent) -> Steps:
        """Every frame's evaluated step with its pre-step state (:func:`pre_step_state`), on the agent's device."""
        return Steps(self.step_inputs(agent.device), pre_step_state(agent, self, agent.device))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set atomically as a compressed ``.npz``."""
        path = Path(path)
        arrays = {"obs": self.obs, "last_action": self.last_action, "reward": self.reward, "done": self.done,
                  "action": self.action, "rgb": self.rgb, "meta": np.array(json.dumps(self.meta)),
                  **{f"masks/{k}": v for k, v in self.masks.items()},
                  **{f"context/{k}": v for k, v in self.context.items()}}
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)
        return path


REQUIRED = ("obs", "last_action", "reward", "done", "action", "rgb", "meta", "context/obs", "context/last_action",
            "context/reward", "context/done")


def load_evalset(path: str | os.PathLike) -> EvalSet:
    """Read an evaluation set; a missing, corrupt or foreign file raises one :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such evaluation set")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in REQUIRED if key not in data.files]
            if missing:
                raise UserError(f"{path}: not an evaluation set (missing {', '.join(missing)})")
            arrays = {key: data[key] for key in data.files}
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"{path}: not a readable evaluation set ({error})") from error
    evalset = EvalSet(
        obs=arrays["obs"], last_action=arrays["last_action"], reward=arrays["reward"], done=arrays["done"],
        action=arrays["action"], rgb=arrays["rgb"],
        masks={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("masks/")},
        context={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("context/")},
        meta=_meta(arrays["meta"], path),
    )
    problem = _problem(evalset)
    if problem:
        raise UserError(f"{path}: not a valid evaluation set ({problem})")
    return evalset


def _meta(value: np.ndarray, path: Path) -> dict:
    try:
        meta = json.loads(str(value))
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("env"), str):
        raise UserError(f"{path}: not a valid evaluation set (its meta is not a JSON object naming the environment)")
    return meta


DTYPES = {"obs": np.uint8, "last_action": np.int64, "reward": np.float32, "done": np.bool_, "action": np.int64,
          "rgb": np.uint8}


def _problem(evalset: EvalSet) -> str:
    """What is wrong with the arrays of an evaluation set read from a file (``""``: nothing)."""
    count = len(evalset.obs)
    if count == 0:
        return "no frames"
    arrays = {name: getattr(evalset, name) for name in DTYPES}
    arrays.update({f"masks/{k}": v for k, v in evalset.masks.items()})
    arrays.update({f"context/{k}": v for k, v in evalset.context.items()})
    lengths = sorted(name for name, array in arrays.items() if len(array) != count)
    if lengths:
        return f"{', '.join(lengths)} not of the {count} frames of obs"
    dtypes = sorted(name for name, kind in DTYPES.items() if arrays[name].dtype != kind)
    dtypes += sorted(f"masks/{k}" for k, v in evalset.masks.items() if v.dtype != np.bool_)
    if dtypes:
        return f"wrong data types: {', '.join(dtypes)}"
    if evalset.obs.ndim != 4 or any(m.shape != (count, *evalset.obs.shape[2:]) for m in evalset.masks.values()):
        return "obs is not [N, C, S, S] with masks [N, S, S]"
    context = evalset.context["obs"]
    if context.ndim != 5 or context.shape[2:] != evalset.obs.shape[1:] or any(
            evalset.context[key].shape != context.shape[:2] for key in ("last_action", "reward", "done")):
        return "the context is not [N, steps, C, S, S] frames with [N, steps] actions, rewards and starts"
    return ""


def pre_step_state(agent, evalset: EvalSet, device: str | torch.device = "cpu"):
    """Each frame's agent state before its evaluated step, built by replaying its context (batch ``N``): only the
    latest steps the state depends on (:attr:`interp.agents.base.Agent.state_horizon`), nothing for an agent
    without state."""
    state = agent.initial_state(len(evalset))
    if not state or evalset.context["obs"].shape[1] == 0:
        return state
    inputs = evalset.context_inputs(device)
    if agent.state_horizon is not None:
        inputs = {key: value[-agent.state_horizon:] for key, value in inputs.items()}
    with torch.no_grad():
        _, state = agent(inputs, state)
    return state
