"""Build a fixed evaluation set by playing a reference policy (a checkpoint) in an environment with object masks."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
from tqdm import tqdm

from interp.agents import Agent
from interp.envs import make_env
from interp.errors import UserError
from interp.evalset import EvalSet, load_evalset
from interp.importers import load_any
from interp.rollout import rollout
from interp.runs import Run


def eligible(masks: dict[str, np.ndarray]) -> bool:
    """Every object present and no two objects overlapping."""
    if not masks or not all(m.any() for m in masks.values()):
        return False
    total = np.sum([m.astype(np.int32) for m in masks.values()], axis=0)
    return bool(total.max() <= 1)


def build_evalset(agent: Agent, env_id: str, *, frames: int = 150, context: int = 32, seed: int = 0,
                  stride: int = 4, play_steps: int = 200_000, reference: str = "", progress: bool = True,
                  env_options: dict | None = None) -> EvalSet:
    """Play ``agent`` (sampling its actions with a generator seeded ``seed``, for at most ``play_steps`` steps) and
    keep every ``stride``-th step whose frame is eligible (all objects present, none overlapping), with the
    ``context`` steps before it, until ``frames`` are kept. ``env_options`` go to the environment (its own
    ``max_steps`` among them, a separate thing from ``play_steps``); frames are the agent's size unless they give
    ``frame_size``."""
    env_options = dict(env_options or {})
    if min(frames, context, stride, play_steps) < 1 or seed < 0:
        raise UserError(f"an evaluation set needs frames, context, stride and steps >= 1 and a seed >= 0; got frames "
                        f"{frames}, context {context}, stride {stride}, steps {play_steps}, seed {seed}")
    env = make_env(env_id, seed=seed, object_masks=True, **{"frame_size": agent.obs_shape[-1], **env_options})
    if tuple(env.observation_space.shape) != agent.obs_shape or int(env.action_space.n) != agent.num_actions:
        raise UserError(f"the reference agent plays observations {agent.obs_shape} with {agent.num_actions} actions; "
                        f"{env_id} has {tuple(env.observation_space.shape)} and {int(env.action_space.n)}: it cannot "
                        "play it")
    history: deque = deque(maxlen=context)
    kept: list[dict] = []
    bar = tqdm(total=frames, desc="evaluation frames", unit="frame", disable=None if progress else True)
    for step in rollout(env, "sampled", agent=agent, seed=seed, steps=play_steps, render=True):
        inputs = step.steps.inputs
        current = (step.obs, int(inputs["last_action"][0, 0]), float(inputs["reward"][0, 0]),
                   bool(inputs["done"][0, 0]))
        if len(history) == context and step.index % stride == 0 and eligible(step.info["object_masks"]):
            kept.append({"obs": step.obs, "last_action": current[1], "reward": current[2], "done": current[3],
                         "action": step.action, "masks": step.info["object_masks"], "rgb": step.rgb,
                         "context": list(history)})
            bar.update()
            if len(kept) == frames:
                break
        history.append(current)
    bar.close()
    env.close()
    if len(kept) < frames:
        raise UserError(f"only {len(kept)} eligible frames (all objects present, none overlapping) in {play_steps} "
                        f"steps of {env_id}; ask for fewer --frames")
    return _evalset(kept, agent.obs_shape, context, {
        "env": env_id, "seed": seed, "reference": reference, "frame_size": agent.obs_shape[-1], "context": context,
        "stride": stride, "env_options": env_options})


def _evalset(kept: list[dict], obs_shape: tuple[int, ...], context: int, meta: dict) -> EvalSet:
    """The kept steps (each with its ``context`` steps before it) as arrays."""
    context_arrays = {
        "obs": np.stack([[c[0] for c in k["context"]] for k in kept]).astype(np.uint8).reshape(
            len(kept), context, *obs_shape),
        "last_action": np.array([[c[1] for c in k["context"]] for k in kept], dtype=np.int64).reshape(-1, context),
        "reward": np.array([[c[2] for c in k["context"]] for k in kept], dtype=np.float32).reshape(-1, context),
        "done": np.array([[c[3] for c in k["context"]] for k in kept], dtype=bool).reshape(-1, context),
    }
    context_arrays["done"][:, 0] = True  # each frame's state is built from here on
    names = sorted(kept[0]["masks"])
    return EvalSet(
        obs=np.stack([k["obs"] for k in kept]).astype(np.uint8),
        last_action=np.array([k["last_action"] for k in kept], dtype=np.int64),
        reward=np.array([k["reward"] for k in kept], dtype=np.float32),
        done=np.array([k["done"] for k in kept], dtype=bool),
        action=np.array([k["action"] for k in kept], dtype=np.int64),
        masks={name: np.stack([k["masks"][name] for k in kept]) for name in names},
        rgb=np.stack([k["rgb"] for k in kept]).astype(np.uint8),
        context=context_arrays,
        meta=meta,
    )


def _has_frames_and_seed(path: Path, frames: int | None, seed: int) -> bool:
    evalset = load_evalset(path)
    return frames in (None, len(evalset)) and evalset.meta.get("seed") == seed


def evalset_from_checkpoint(source: str | Path, env_id: str, **options) -> EvalSet:
    """:func:`build_evalset` with the checkpoint at ``source`` (a run directory: its final checkpoint), which must
    have been trained on ``env_id``."""
    source = Path(source)
    if source.is_dir():
        run = Run.open(source)
        source = run.checkpoint(run.final)
    elif not source.exists():
        raise UserError(f"{source}: no such checkpoint or run directory")
    loaded = load_any(source)  # this toolkit's checkpoints and other libraries', as `interp analyse` takes them
    trained_on = loaded.meta.get("env")
    reference = str(source) if trained_on in (None, env_id) else f"{source} (trained on {trained_on})"
    preprocessing = {"preprocessing": loaded.meta["preprocessing"]} if loaded.meta.get("preprocessing") else {}
    env_options = {**preprocessing, **options.pop("env_options", {})}
    return build_evalset(loaded.agent, env_id, reference=reference, env_options=env_options, **options)


def ensure_evalset(run: Run, *, frames: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """The run's own evaluation set, ``analysis/evalset.npz``, played by its final checkpoint; built if missing or
    if the one there has another seed or number of frames than asked for (``frames=None``: whatever it has, 150 for
    a new one; the results cached for the old set stay, under its own key)."""
    path = run.evalset_path
    if not path.exists() or not _has_frames_and_seed(path, frames, seed):
        evalset = build_evalset(run.agent, run.environment.id, frames=frames or 150, seed=seed,
                                reference=str(run.checkpoint(run.final)), progress=progress,
                                env_options=run.environment.options)
        evalset.save(path)
    return path
