"""Running an analysis over every checkpoint of a run: the checkpoints, a cache per analysis, worker processes.

Each analysis stage keeps one file per checkpoint under ``RUN_DIR/analysis/cache/<stage>-<key>/``, where ``key``
hashes the evaluation set's bytes and the stage's options: results on disk are reused, a changed evaluation set or
option starts a fresh folder, and every file is written atomically (an interrupted run loses at most the
checkpoints in progress).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from interp.cluster import connect, disconnect, import_ray
from interp.errors import UserError
from interp.files import atomic_path


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    found = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not found:
        raise UserError(f"{run_dir}: no checkpoints (expected {run_dir / 'checkpoints'}/step_*.pt)")
    return found


def checkpoint_step(path: Path) -> int:
    return int(Path(path).stem.split("_")[-1])


def cache_dir(run_dir: str | Path, stage: str, evalset_path: str | Path, options: dict) -> Path:
    digest = hashlib.sha256(Path(evalset_path).read_bytes())
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    path = Path(run_dir) / "analysis" / "cache" / f"{stage}-{digest.hexdigest()[:12]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_result(path: Path, result: pd.DataFrame | dict[str, np.ndarray]) -> None:
    if isinstance(result, pd.DataFrame):
        with atomic_path(path, suffix=".csv") as tmp:
            result.to_csv(tmp, index=False)
    else:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **result)


def load_result(path: Path) -> pd.DataFrame | dict[str, np.ndarray]:
    if path.suffix == ".csv":
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        return table.fillna({column: "" for column in table.columns if table[column].dtype == object})
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _ray_job(job: Callable[[Path], pd.DataFrame | dict[str, np.ndarray]], checkpoint: Path):
    torch.set_num_threads(1)  # one core per task, as Ray schedules them
    return job(checkpoint)


def for_each_checkpoint(checkpoints: list[Path], cache: Path, suffix: str,
                        job: Callable[[Path], pd.DataFrame | dict[str, np.ndarray]], *, workers: int = 1,
                        backend: str = "local", desc: str = "", progress: bool = True) -> dict[int, Path]:
    """Run ``job(checkpoint)`` for every checkpoint without a result in ``cache`` and save what it returns
    (``suffix`` ``.csv`` for a table, ``.npz`` for arrays). ``workers > 1``: in that many processes (``job``
    must then be picklable, e.g. a ``functools.partial`` of a module-level function). ``backend="ray"``: as Ray
    tasks on the connected cluster (see :mod:`interp.cluster`; the run directory must be on a file system every node
    sees), a task whose worker is lost retried up to ``RAY_RETRIES`` times. Results are written here, atomically,
    as they arrive.

    Returns:
        step -> result file, for every checkpoint.
    """
    paths = {checkpoint_step(c): cache / f"{c.stem}{suffix}" for c in checkpoints}
    todo = [c for c in checkpoints if not paths[checkpoint_step(c)].exists()]
    bar = tqdm(total=len(checkpoints), initial=len(checkpoints) - len(todo), desc=desc, unit="checkpoint",
               disable=None if progress else True)

    def save(checkpoint: Path, result: pd.DataFrame | dict[str, np.ndarray]) -> None:
        save_result(paths[checkpoint_step(checkpoint)], result)
        bar.update()

    if backend == "ray" and todo:
        _on_ray(todo, job, save)
    elif workers <= 1 or len(todo) <= 1:
        for checkpoint in todo:
            save(checkpoint, job(checkpoint))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(job, checkpoint): checkpoint for checkpoint in todo}
            try:
                for future in as_completed(futures):
                    save(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    bar.close()
    return paths


RAY_RETRIES = 3


def _on_ray(checkpoints: list[Path], job: Callable, done: Callable[[Path, object], None]) -> None:
    """``done(checkpoint, job(checkpoint))`` for each checkpoint, the jobs run as Ray tasks."""
    ray = import_ray()
    started = connect()
    task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_ray_job)  # retried when a worker dies, not on errors
    pending = {task.remote(job, checkpoint): checkpoint for checkpoint in checkpoints}
    try:
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                checkpoint = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # the job's own exception, e.g. a UserError
                    raise error.cause from None
                done(checkpoint, result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        disconnect(started)
