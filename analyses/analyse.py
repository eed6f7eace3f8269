"""One call for a whole run: the evaluation set, then the stages of :data:`analyses.STAGES` over the run's
checkpoints in worker processes (or Ray tasks), reusing every result already on disk (see :mod:`analyses.stage`),
so an interrupted or extended run continues where it stopped."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from analyses import STAGES
from analyses.evalset import ensure_evalset
from analyses.findings import run_findings, write_findings
from analyses.stage import Plan, run_stage
from interp.cluster import connect, disconnect
from interp.devices import resolve_device
from interp.errors import UserError
from interp.runs import Run


def analyse_run(run: str | Path | Run, evalset_path: str | Path | None = None, *,
                stages: tuple[str, ...] | None = None, options: dict[str, Any] | None = None, frames: int | None = None,
                seed: int = 0, workers: int | None = None, backend: str = "local", ray_address: str = "",
                device: str = "auto", progress: bool = True, log=print) -> dict[str, float]:
    """Run ``stages`` (default: every stage that applies to the run's agent) and return the seconds each took.

    Args:
        evalset_path: the evaluation set; without one, the run's ``analysis/evalset.npz`` (``frames`` frames played
            by the final checkpoint, seeded ``seed``) is built when missing or when it has another seed or number
            of frames (``frames=None``: the one there, whatever its frames; 150 for a new one).
        options: stage name -> that stage's options (default: its defaults).
        workers: processes for the checkpoint jobs (default: one per core, at most one per checkpoint).
        backend: ``"ray"`` runs the jobs as Ray tasks on the cluster at ``ray_address`` (default: ``$RAY_ADDRESS``,
            else one started here).
        device: where the jobs compute: ``auto`` (a GPU when torch sees one), ``cpu``, ``cuda`` or ``cuda:N``; the
            results equal the CPU's within float tolerance and are cached under the same keys.
    """
    run = run if isinstance(run, Run) else Run.open(run)
    unknown = sorted(set(stages or ()) - set(STAGES))
    if unknown:
        raise UserError(f"unknown analysis stage(s) {unknown}; known: {', '.join(STAGES)}")
    run.check_architecture()
    plan = Plan(run, Path(evalset_path) if evalset_path else None, dict(options or {}), resolve_device(device))
    workers = workers or min(len(run.steps), os.cpu_count() or 1)
    started_ray = connect(ray_address) if backend == "ray" else False
    with contextlib.ExitStack() as stack:
        stack.callback(disconnect, started_ray)
        stack.enter_context(run.lock("interp analyse", folder=run.analysis))
        seconds: dict[str, float] = {}
        chosen = [STAGES[name] for name in (stages or STAGES)]
        if plan.evalset is None and any(_uses_evalset(stage) for stage in chosen):
            start = time.perf_counter()
            plan.evalset = ensure_evalset(run, frames=frames, seed=seed, progress=progress)
            seconds["evalset"] = time.perf_counter() - start
            log(f"evaluation set: {plan.evalset}")
        for stage in chosen:
            reason = stage.applies(run.agent)
            if reason and stages:  # asked for by name
                raise UserError(f"{run.directory}: {reason}")
            if reason:
                log(f"{stage.name}: skipped, {reason}")
                continue
            start = time.perf_counter()
            run_stage(plan, stage, workers=workers, backend=backend, progress=progress)
            seconds[stage.name] = time.perf_counter() - start
            log(f"{stage.name}: done, in {run.analysis}")
        write_findings(run.findings_path, run_findings(run))
        return seconds


def _uses_evalset(stage) -> bool:
    return stage.uses_evalset or any(_uses_evalset(STAGES[name]) for name in stage.needs)
