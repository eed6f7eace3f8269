"""One command for a whole run: evaluation set, maps, ATOM, agreement, sanity checks, how well it plays.

Stages run over all checkpoints in worker processes and reuse every result already on disk (see
:mod:`analyses.runs`), so an interrupted or extended run continues where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from analyses.atom import atom_for_run
from analyses.evalset import build_evalset
from analyses.evaluate import evaluate_run
from analyses.maps import maps_for_run
from analyses.overlap import has_attention_images, overlap_for_run
from analyses.runs import run_checkpoints
from analyses.sanity import sanity_for_run
from interp.agents import load_checkpoint
from interp.cluster import connect, disconnect
from interp.errors import UserError


def run_environment(run_dir: Path) -> tuple[str, dict]:
    """The environment id and options (with the frame size) a run was trained on (``config.json``, else the
    final checkpoint)."""
    config_path = run_dir / "config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
    else:
        config = load_checkpoint(run_checkpoints(run_dir)[-1]).meta.get("config", {})
    if "env" not in config:
        raise UserError(f"{run_dir}: neither config.json nor the checkpoints name the environment; give --evalset")
    return config["env"], {"frame_size": config.get("frame_size", 84), **config.get("env_options", {})}


def analyse_run(run_dir: str | Path, evalset_path: str | Path | None = None, *, frames: int = 150,
                workers: int | None = None, backend: str = "local", ray_address: str = "", progress: bool = True,
                episodes: int = 20, seed: int = 0, log=print) -> dict[str, float]:
    """Every analysis of the run; returns the seconds each stage took. The final checkpoint plays ``episodes``
    whole episodes per policy (:func:`analyses.evaluate.evaluate_run`); ``seed`` seeds those episodes and a new
    evaluation set. ``backend="ray"``: the checkpoint x stage jobs run as Ray tasks on the cluster at
    ``ray_address`` (default: ``$RAY_ADDRESS``, else one started here)."""
    if episodes < 1:  # checked before hours of analysis, not after
        raise UserError(f"episodes must be at least 1, not {episodes}")
    run_dir = Path(run_dir)
    checkpoints = run_checkpoints(run_dir)
    workers = workers or min(len(checkpoints), os.cpu_count() or 1)
    started_ray = connect(ray_address) if backend == "ray" else False
    try:
        return _stages(run_dir, checkpoints, evalset_path, frames, workers, backend, progress, episodes, seed, log)
    finally:
        disconnect(started_ray)


def _stages(run_dir: Path, checkpoints: list[Path], evalset_path: str | Path | None, frames: int, workers: int,
            backend: str, progress: bool, episodes: int, seed: int, log) -> dict[str, float]:
    parallel = {"workers": workers, "backend": backend, "progress": progress}
    seconds: dict[str, float] = {}
    env_id, env_options = run_environment(run_dir)  # the evaluation needs it: an error comes before the work
    start = time.perf_counter()
    if evalset_path is None:
        evalset_path = run_dir / "analysis" / "evalset.npz"
        if not evalset_path.exists():
            agent = load_checkpoint(checkpoints[-1]).agent
            evalset = build_evalset(agent, env_id, frames=frames, seed=seed, reference=str(checkpoints[-1]),
                                    progress=progress, **env_options)
            evalset.save(evalset_path)
    seconds["evalset"] = time.perf_counter() - start
    log(f"evaluation set: {evalset_path}")

    start = time.perf_counter()
    maps_for_run(run_dir, evalset_path, **parallel)
    seconds["maps"] = time.perf_counter() - start
    log(f"maps: {run_dir / 'analysis' / 'cache'}/maps-*")

    start = time.perf_counter()
    atom_for_run(run_dir, evalset_path, **parallel)
    seconds["atom"] = time.perf_counter() - start
    log(f"ATOM: {run_dir / 'analysis' / 'atom.csv'}, atom.png")

    start = time.perf_counter()
    if has_attention_images(load_checkpoint(checkpoints[0]).agent):
        overlap_for_run(run_dir, evalset_path, **parallel)
        log(f"agreement: {run_dir / 'analysis' / 'overlap.csv'}, overlap/*.png")
    else:
        log("agreement: skipped, the agent has no attention over the frame")
    seconds["overlap"] = time.perf_counter() - start

    start = time.perf_counter()
    sanity_for_run(run_dir, evalset_path)
    seconds["sanity"] = time.perf_counter() - start
    log(f"sanity checks: {run_dir / 'analysis' / 'sanity.csv'}, sanity_flags.csv, sanity.png")

    start = time.perf_counter()
    evaluate_run(run_dir, env_id, episodes=episodes, seed=seed, **env_options)
    seconds["evaluation"] = time.perf_counter() - start
    log(f"returns of the final checkpoint: {run_dir / 'analysis' / 'evaluation.csv'}")
    return seconds
