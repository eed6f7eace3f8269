"""Attention and saliency maps of every checkpoint on the evaluation set, kept in the cache for the stages that read
them (ATOM's saliency profiles, agreement); ``interp maps CHECKPOINT --out DIR`` writes one checkpoint's to
``DIR/maps.npz``.

Keys: ``<method>/actor`` and ``<method>/critic`` float32 ``[N, S, S]`` for each saliency method, and
``attention/<hook name>`` in the layouts of :mod:`interp.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from analyses.stage import Job, Stage
from interp.agents import Agent
from interp.attention import attention_maps
from interp.errors import UserError
from interp.runs import Run
from interp.saliency import METHODS
from interp.steps import Steps

MAP_METHODS = ("perturbation", "gradient", "smoothgrad", "lrp")
"""the saliency methods a run's analyses compute by default (one set, so the stages share one maps cache)"""


def check_methods(methods: tuple[str, ...] | list[str]) -> None:
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"unknown saliency method(s) {unknown}; known: {', '.join(METHODS)}")


@dataclass(frozen=True)
class MapsOptions:
    methods: tuple[str, ...] = field(default=MAP_METHODS, metadata={"flags": ("--methods",)})
    """comma-separated saliency methods: perturbation, gradient, integrated_gradients, smoothgrad, occlusion, lrp"""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        object.__setattr__(self, "methods", tuple(sorted(self.methods)))  # one cache for any order


def compute_maps(agent: Agent, steps: Steps, methods: tuple[str, ...], progress: bool = True
                 ) -> dict[str, np.ndarray]:
    """Saliency (``methods``) and attention maps of ``agent`` at every step of ``steps`` (an evaluation set's:
    :meth:`interp.evalset.EvalSet.steps`)."""
    check_methods(methods)
    agent.eval()
    maps = {f"attention/{name}": value for name, value in attention_maps(agent, steps).items()}
    for method in tqdm(methods, desc="saliency", unit="method", disable=None if progress else True):
        result = METHODS[method].attribute(agent, steps)
        maps[f"{method}/actor"], maps[f"{method}/critic"] = result["actor"], result["critic"]
    return maps


def compute(job: Job) -> dict[str, np.ndarray]:
    _, loaded, steps = job.evaluation()
    return compute_maps(loaded.agent, steps, job.options.methods, progress=False)


def finish(run: Run, results: dict[int, Path], options: MapsOptions) -> None:
    """The maps stay in the cache, where the stages that read them find them."""


STAGE = Stage(
    name="maps", summary="attention and saliency maps of every checkpoint on an evaluation set",
    description="Compute the attention maps and the saliency maps of --methods for every checkpoint of RUN_DIR on "
                "the evaluation set, into the run's cache (RUN_DIR/analysis/cache/maps-*), where ATOM and agreement "
                "read them. Given a checkpoint file and --out DIR instead, write DIR/maps.npz: <method>/actor and "
                "<method>/critic float32 [N, S, S] per saliency method, and attention/<hook name> per attention hook.",
    options=MapsOptions, compute=compute, finish=finish, suffix=".npz", on_a_checkpoint=True)
