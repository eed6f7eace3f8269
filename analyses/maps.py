"""Attention and saliency maps of one checkpoint on an evaluation set: ``DIR/maps.npz``, and of every checkpoint of
a run: ``RUN_DIR/analysis/cache/maps-*/step_*.npz``, shared by the ATOM and agreement stages.

Keys: ``<method>/actor`` and ``<method>/critic`` float32 ``[N, S, S]`` for each saliency method, and
``attention/<hook name>`` in the layouts of :mod:`interp.attention`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from analyses.runs import cache_dir, for_each_checkpoint, run_checkpoints, save_result
from interp.agents import Agent, load_checkpoint
from interp.attention import attention_maps
from interp.errors import UserError
from interp.evalset import EvalSet, load_evalset, pre_step_state
from interp.saliency import METHODS, Steps

MAP_METHODS = ("perturbation", "gradient", "smoothgrad", "lrp")
"""the saliency methods a run's analyses compute by default (one set, so the stages share one maps cache)"""


def check_compatible(agent: Agent, meta: dict, env_id: str, obs_shape: tuple[int, ...], checkpoint: Path) -> None:
    """Frames of ``env_id`` with ``obs_shape`` must be what the checkpoint was trained on."""
    trained_on = meta.get("env")
    if trained_on and trained_on != env_id:
        raise UserError(f"{checkpoint} was trained on {trained_on}, not on {env_id}")
    if tuple(obs_shape) != agent.obs_shape:
        raise UserError(f"{checkpoint} expects observations {agent.obs_shape}, {env_id} gives {tuple(obs_shape)}")


def check_methods(methods: tuple[str, ...] | list[str]) -> None:
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"unknown saliency method(s) {unknown}; known: {', '.join(METHODS)}")


def compute_maps(agent: Agent, evalset: EvalSet, methods: list[str], progress: bool = True) -> dict[str, np.ndarray]:
    """Saliency (``methods``) and attention maps of ``agent`` at every frame of ``evalset``."""
    check_methods(methods)
    agent.eval()
    steps = Steps(evalset.step_inputs(), pre_step_state(agent, evalset))
    maps = {f"attention/{name}": value for name, value in attention_maps(agent, steps).items()}
    for method in tqdm(methods, desc="saliency", unit="method", disable=None if progress else True):
        result = METHODS[method].attribute(agent, steps)
        maps[f"{method}/actor"], maps[f"{method}/critic"] = result["actor"], result["critic"]
    return maps


def maps_for_checkpoint(checkpoint: str | Path, evalset: EvalSet, out_dir: str | Path, methods: list[str],
                        progress: bool = True) -> Path:
    loaded = load_checkpoint(checkpoint)
    check_compatible(loaded.agent, loaded.meta, evalset.env, evalset.obs.shape[1:], Path(checkpoint))
    path = Path(out_dir) / "maps.npz"
    save_result(path, compute_maps(loaded.agent, evalset, methods, progress))
    return path


def maps_job(checkpoint: Path, evalset_path: Path, methods: tuple[str, ...]) -> dict[str, np.ndarray]:
    evalset = load_evalset(evalset_path)
    loaded = load_checkpoint(checkpoint)
    check_compatible(loaded.agent, loaded.meta, evalset.env, evalset.obs.shape[1:], checkpoint)
    return compute_maps(loaded.agent, evalset, list(methods), progress=False)


def maps_for_run(run_dir: str | Path, evalset_path: str | Path, methods: tuple[str, ...] = MAP_METHODS, *,
                 workers: int = 1, backend: str = "local", progress: bool = True) -> dict[int, Path]:
    """The maps of every checkpoint of ``run_dir`` on the evaluation set, computed where not cached yet.

    Returns:
        step -> ``.npz`` file with the keys of :func:`compute_maps`.
    """
    methods = tuple(sorted(methods))
    check_methods(methods)
    cache = cache_dir(run_dir, "maps", evalset_path, {"methods": methods})
    return for_each_checkpoint(run_checkpoints(run_dir), cache, ".npz",
                               partial(maps_job, evalset_path=Path(evalset_path), methods=methods),
                               workers=workers, backend=backend, desc="maps", progress=progress)
