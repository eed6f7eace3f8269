"""Analysis stages over a run's checkpoints: one declaration per stage, one cache, local processes or Ray tasks.

A :class:`Stage` declares its name (its command, its cache folder, usually its table ``<name>.csv``), an options
dataclass (whose fields become the command's flags), the job it does for one checkpoint, which checkpoints it
covers (all, or the final one), the stages whose per-checkpoint results its job reads, how the per-checkpoint
results become the run's files (a tidy table, plots, pictures), and its section of the report. The registry,
:data:`analyses.STAGES`, lists them in the order they run.

Each per-checkpoint result is kept at ``RUN/analysis/cache/<stage>-<key>/step_<12 digits>-<digest>.<suffix>`` where
``key`` hashes the stage's options, the evaluation set's bytes and the keys of the stages it reads, and ``digest``
the checkpoint file's bytes: replaced weights, another evaluation set or other options are computed afresh. Beside
each result a ``.sha256`` file holds its checksum; a result that does not match it (edited, truncated) is computed
again. Every file is written atomically, so an interrupted analysis loses at most the checkpoints in progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from interp import precision
from interp.agents import Checkpoint
from interp.cluster import connect, disconnect, import_ray
from interp.errors import UserError
from interp.evalset import EvalSet, load_evalset, pre_step_state
from interp.files import atomic_path
from interp.importers import load_any
from interp.memory import reuse_freed_memory
from interp.runs import Environment, Run
from interp.steps import State, Steps

Result = pd.DataFrame | dict[str, np.ndarray] | bytes
"""what a job returns: a table (kept as ``.csv``), arrays (``.npz``) or a file's bytes (the stage's suffix)"""


@dataclass(frozen=True)
class Job:
    """One stage's work for one checkpoint: what a worker process or Ray task needs, nothing more (picklable)."""

    stage: str
    checkpoint: Path
    step: int
    environment: Environment
    evalset: Path | None
    options: Any
    architecture: str
    """the run's architecture: a checkpoint of another one in the run is an error, not a row"""
    needed: dict[str, Path] = field(default_factory=dict)
    """stage name -> that stage's result file for this checkpoint"""
    device: str = "cpu"
    """where the job computes (resolved: ``cpu``, ``cuda``, ``cuda:N``); not part of any cache key"""
    states: Path | None = None
    """where the checkpoint's pre-step states on the evaluation set are kept: the first job that needs them replays
    the frames' context and writes them, the stages after it read them (None: replayed by every job)"""

    def load(self, evalset: EvalSet | None = None) -> Checkpoint:
        """The checkpoint's agent (eval mode), checked against the run's architecture and environment and, if given,
        the evaluation set's frames."""
        loaded = load_any(self.checkpoint, expected_name=self.architecture)
        environment = self.environment.id
        trained_on = loaded.meta.get("env")
        if trained_on and trained_on != environment:
            raise UserError(f"{self.checkpoint} was trained on {trained_on}, not on the run's {environment}")
        if evalset is not None and evalset.env != environment:
            raise UserError(f"the evaluation set was played on {evalset.env}, not on the run's {environment} "
                            f"({self.checkpoint})")
        frames = (tuple(evalset.obs.shape[1:]) if evalset is not None
                  else (loaded.agent.obs_shape[0], self.environment.frame_size, self.environment.frame_size))
        if frames != loaded.agent.obs_shape:
            raise UserError(f"{self.checkpoint} expects observations {loaded.agent.obs_shape}, {environment} gives "
                            f"{frames}")
        loaded.agent.eval().to(self.device)
        return loaded

    def evaluation(self, frames: slice | None = None) -> tuple[EvalSet, Checkpoint, Steps]:
        """The job's evaluation set (``frames`` of it), the checkpoint's agent on the job's device, and the set's
        evaluated steps with each frame's pre-step state (:func:`interp.evalset.pre_step_state`, kept at
        :attr:`states`)."""
        evalset = load_evalset(self.evalset)
        loaded = self.load(evalset)
        state = self._pre_step_state(evalset, loaded.agent)
        if frames is not None:
            evalset, state = evalset.subset(frames), tuple(s[frames] for s in state)
        return evalset, loaded, Steps(evalset.step_inputs(loaded.agent.device), state)

    def _pre_step_state(self, evalset: EvalSet, agent) -> State:
        """Replaying the context costs as much as all of the maps on memory agents (the TimeSformer's 150 frames of
        32 steps each), and three stages need it per checkpoint."""
        if self.states is not None and verified(self.states):
            return tuple(torch.from_numpy(value).to(agent.device) for value in load_result(self.states).values())
        state = pre_step_state(agent, evalset, agent.device)
        if self.states is not None and state:
            save_result(self.states, {f"state_{index}": s.cpu().numpy() for index, s in enumerate(state)})
        return state


@dataclass(frozen=True)
class Stage:
    """One analysis, declared once (see the module docstring)."""

    name: str
    summary: str
    """one line for ``interp --help``"""
    description: str
    """what the stage computes and writes, for ``interp <name> --help``"""
    options: type
    """frozen dataclass of the stage's choices; its fields are the command's flags"""
    compute: Callable[[Job], Result]
    """the job for one checkpoint (a module-level function, so that worker processes can run it)"""
    finish: Callable[[Run, dict[int, Path], Any], None]
    """writes the run's files (tables, plots) from the per-checkpoint results: step -> result file"""
    section: Callable[[Run], str] | None = None
    """the report's HTML for this stage of a run, read from the files on disk"""
    heading: str = ""
    """the report section's heading"""
    suffix: str = ".csv"
    checkpoints: str = "all"
    """``all`` or ``final``: the checkpoints the stage covers"""
    needs: tuple[str, ...] = ()
    uses_evalset: bool = True
    applies: Callable[[Any], str] = lambda agent: ""
    """why the stage does not apply to an agent (``""``: it does)"""
    version: int = 1
    """raised when the stage's results change form (a new column, say), so that cached ones are computed again"""
    tables: tuple[str, ...] = ()
    """the tables ``finish`` writes into the analysis folder (the report offers each for download)"""
    figures: tuple[str, ...] = ()
    """the figures and pictures ``finish`` writes, as glob patterns in the analysis folder (``stills/*.png``);
    the docs' figure scripts copy them"""
    on_a_checkpoint: bool = False
    """its command also takes one checkpoint file (with ``--out``) instead of a run"""


# ---- results on disk ----


def save_result(path: Path, result: Result) -> None:
    """Write a result atomically, then its checksum beside it (``<name>.sha256``)."""
    if isinstance(result, pd.DataFrame):
        with atomic_path(path, suffix=".csv") as tmp:
            result.to_csv(tmp, index=False)
    elif isinstance(result, bytes):
        with atomic_path(path, suffix=path.suffix) as tmp:
            tmp.write_bytes(result)
    else:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **result)
    with atomic_path(_checksum_path(path)) as tmp:
        tmp.write_text(_sha256(path))


def load_result(path: Path) -> Result:
    if path.suffix == ".csv":
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        return table.fillna({column: "" for column in table.columns
                             if not pd.api.types.is_numeric_dtype(table[column])})  # text: str under pandas 3
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    return path.read_bytes()


def verified(path: Path) -> bool:
    """Whether a cached result exists and matches the checksum written with it."""
    checksum = _checksum_path(path)
    return path.is_file() and checksum.is_file() and checksum.read_text().strip() == _sha256(path)


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_table(path: Path, table: pd.DataFrame) -> None:
    """A run-level table, atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)


# ---- the cache ----


def stage_key(stage: Stage, options, evalset: Path | None, needed_keys: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(options), sort_keys=True, default=str).encode())
    digest.update(f"version {stage.version}".encode())
    if stage.uses_evalset and evalset is not None:
        digest.update(Path(evalset).read_bytes())
    digest.update(json.dumps(needed_keys, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def result_path(run: Run, stage: Stage, key: str, step: int) -> Path:
    checkpoint_digest = _sha256(run.checkpoint(step))[:12]
    return run.cache / f"{stage.name}-{key}" / f"step_{step:012d}-{checkpoint_digest}{stage.suffix}"


# ---- running jobs ----


@contextlib.contextmanager
def exact_arithmetic():
    """Every job computes on one torch thread, whatever the backend and the machine: a reduction split over another
    number of threads rounds differently, and rank statistics (the sanity checks' Spearman) turn those last-bit
    differences into visible ones. Parallelism comes from running jobs side by side. On a GPU, float32 stays
    float32 (no TF32, whose 10-bit products cuDNN's convolutions take by default: gradient maps of one network then
    differed from the CPU's by up to a third of their largest value)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with precision.tf32_matmuls(False):
            yield
    finally:
        torch.set_num_threads(previous)


def _init_worker(parent: int) -> None:
    _exit_with_parent(parent)
    torch.set_num_threads(1)  # before any pool of threads starts; see exact_arithmetic


def _exit_with_parent(parent: int) -> None:
    """Ask Linux to end this worker when the process that started it (``parent``) dies, even by SIGKILL; if it died
    while this worker was starting, end now."""
    import ctypes
    import signal

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _compute(job: Job) -> Result:
    from analyses import STAGES

    return STAGES[job.stage].compute(job)


RAY_RETRIES = 3


def run_jobs(jobs: dict[Path, Job], *, workers: int = 1, backend: str = "local", desc: str = "",
             progress: bool = True, compute: Callable[[Job], Result] = _compute) -> None:
    """Compute every job and save its result at its path (result path -> job), as results arrive. ``workers >
    1``: in that many processes; ``backend="ray"``: as Ray tasks on the connected cluster (the run directory on a
    file system every node sees), a task whose worker is lost retried up to ``RAY_RETRIES`` times."""
    bar = tqdm(total=len(jobs), desc=desc, unit="checkpoint", disable=None if progress else True)

    def save(path: Path, result: Result) -> None:
        save_result(path, result)
        bar.update()

    try:
        if backend == "ray" and jobs:
            _on_ray(jobs, save, compute)
        elif workers <= 1 or len(jobs) <= 1:
            for path, job in jobs.items():
                save(path, _exactly(compute, job))
        else:
            _in_processes(jobs, save, compute, workers)
    finally:
        bar.close()


LOG = logging.getLogger(__name__)
WORKER_RETRIES = 2
"""times the jobs left are given to a new pool of processes after a worker died (killed, out of memory)"""


def _in_processes(jobs: dict[Path, Job], save: Callable, compute: Callable, workers: int) -> None:
    """The jobs in ``workers`` processes; when one dies, the jobs not finished go to a new pool (the finished ones
    are saved already), up to :data:`WORKER_RETRIES` times, then the command ends with one line."""
    left = dict(jobs)
    for _ in range(WORKER_RETRIES + 1):
        try:
            _one_pool(left, save, compute, workers)
            return
        except BrokenProcessPool:
            left = {path: job for path, job in left.items() if not verified(path)}
            LOG.warning("a worker process died; its %d unfinished job(s) go to new processes", len(left))
    raise UserError(f"a worker process died {WORKER_RETRIES + 1} times (killed, or out of memory?); the "
                    f"{len(jobs) - len(left)} results finished are kept, {len(left)} are not: run the command again")


def _one_pool(jobs: dict[Path, Job], save: Callable, compute: Callable, workers: int) -> None:
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_exactly, compute, job): path for path, job in jobs.items()}
        try:
            for future in as_completed(futures):
                save(futures[future], future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _on_ray(jobs: dict[Path, Job], save: Callable, compute: Callable) -> None:
    ray = import_ray()
    started = connect()
    task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_exactly)  # retried when a worker dies, not on errors
    pending = {task.remote(compute, job): path for path, job in jobs.items()}
    try:
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                path = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # the job's own exception, e.g. a UserError
                    raise error.cause from None
                save(path, result)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        disconnect(started)


def _exactly(compute: Callable[[Job], Result], job: Job) -> Result:
    """One job under :func:`exact_arithmetic`, in every backend (a Ray task also gets one core as Ray schedules
    it), with freed memory kept for the next batch of passes (:func:`interp.memory.reuse_freed_memory`, for the
    rest of the process)."""
    reuse_freed_memory()
    with exact_arithmetic():
        return compute(job)


# ---- a stage over a run ----


@dataclass
class Plan:
    """What the stages of one command do on one run: their options, evaluation set and cache keys."""

    run: Run
    evalset: Path | None
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    """where the jobs compute (resolved, see :func:`interp.devices.resolve_device`)"""
    keys: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[int, Path]] = field(default_factory=dict)

    def options_of(self, stage: Stage):
        return self.options.get(stage.name) or stage.options()


def run_stage(plan: Plan, stage: Stage, *, workers: int = 1, backend: str = "local", progress: bool = True
              ) -> dict[int, Path]:
    """The stage's result for each checkpoint it covers, computed where the cache has none that verifies (the stages
    it needs first), then its files written. Returns step -> result file."""
    from analyses import STAGES

    if stage.name in plan.results:
        return plan.results[stage.name]
    for name in stage.needs:
        run_stage(plan, STAGES[name], workers=workers, backend=backend, progress=progress)
    if stage.uses_evalset and plan.evalset is None:
        raise UserError(f"{plan.run.directory}: the {stage.name} analysis needs an evaluation set: give --evalset, "
                        f"or run `interp analyse {plan.run.directory}`, which builds one")
    options = plan.options_of(stage)
    key = stage_key(stage, options, plan.evalset, {name: plan.keys[name] for name in stage.needs})
    steps = plan.run.steps if stage.checkpoints == "all" else [_chosen_step(plan.run, options)]
    paths = {step: result_path(plan.run, stage, key, step) for step in steps}
    # the pre-step states on this evaluation set, named as the results are (step and checkpoint digest)
    states = plan.run.cache / f"states-{_sha256(plan.evalset)[:12]}" if plan.evalset else None
    jobs = {paths[step]: Job(stage.name, plan.run.checkpoint(step), step, plan.run.environment, plan.evalset,
                             options, plan.run.architecture, {name: plan.results[name][step] for name in stage.needs},
                             plan.device, states / paths[step].with_suffix(".npz").name if states else None)
            for step in steps if not verified(paths[step])}
    run_jobs(jobs, workers=workers, backend=backend, desc=stage.name, progress=progress)
    plan.keys[stage.name], plan.results[stage.name] = key, paths
    plan.run.analysis.mkdir(parents=True, exist_ok=True)
    stage.finish(plan.run, paths, options)
    return paths


def _chosen_step(run: Run, options) -> int:
    """The checkpoint a final-checkpoint stage covers: its ``checkpoint`` option (a step, or a checkpoint file of the
    run) if it has one, else the final one."""
    chosen = getattr(options, "checkpoint", None)
    if chosen in (None, ""):
        return run.final
    if str(chosen).isdigit():
        run.checkpoint(int(chosen))  # an unknown step is an error here, not in a worker
        return int(chosen)
    return run.step_of(chosen)


def table_of(paths: dict[int, Path], *, step_column: bool = True) -> pd.DataFrame:
    """The per-checkpoint tables, one after the other, with a ``step`` column first."""
    tables = [load_result(path) for path in paths.values()]
    if step_column:
        tables = [table.assign(step=step) for step, table in zip(paths, tables, strict=True)]
    table = pd.concat(tables, ignore_index=True)
    return table[["step", *[c for c in table.columns if c != "step"]]] if step_column else table
