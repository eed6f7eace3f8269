"""Stills of the final checkpoint: each attention head and the actor's and critic's perturbation saliency on one
evaluation frame, overlaid on the raw frame, as PNGs in ``RUN_DIR/analysis/stills/`` for the report."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyses import page
from analyses.stage import Job, Stage, load_result
from interp.attention import attention_maps, head_images
from interp.errors import UserError
from interp.evalset import load_evalset
from interp.files import atomic_path
from interp.render import heatmap_overlay, upscale
from interp.runs import Run
from interp.saliency import Perturbation

SIZE = 168


@dataclass(frozen=True)
class StillsOptions:
    frame: int = 0
    """the evaluation frame shown"""

    def __post_init__(self) -> None:
        if self.frame < 0:
            raise UserError(f"the frame is an index into the evaluation set, >= 0, not {self.frame}")


def compute(job: Job) -> dict[str, np.ndarray]:
    """Panel name -> RGB image ``[SIZE, SIZE, 3]``, in the order the report shows them."""
    frame = job.options.frame
    if frame >= len(load_evalset(job.evalset)):
        raise UserError(f"{job.evalset} has {len(load_evalset(job.evalset))} frames; no frame {frame}")
    evalset, loaded, steps = job.evaluation(slice(frame, frame + 1))
    agent = loaded.agent
    panels = {name.replace(".hook_weights", "").split(".")[-1]: maps[0] for name, maps in
              head_images(attention_maps(agent, steps)).items()}
    saliency = Perturbation().attribute(agent, steps)
    panels.update({f"{target} saliency": saliency[target][0] for target in ("actor", "critic")})
    return {name: upscale(heatmap_overlay(evalset.rgb[0], values), SIZE) for name, values in panels.items()}


def finish(run: Run, results: dict[int, Path], options: StillsOptions) -> None:
    (path,) = results.values()
    folder = run.analysis / "stills"
    for stale in folder.glob("*.png"):
        stale.unlink()
    for index, (name, image) in enumerate(load_result(path).items()):
        with atomic_path(folder / f"{index:02d}-{name.replace('/', '_')}.png", suffix=".png") as tmp:
            tmp.write_bytes(page.png(image))


def section(run: Run) -> str:
    stills = sorted((run.analysis / "stills").glob("*.png"))
    if not stills:
        return page.missing("attention stills", f"interp stills {run.directory}")
    return f'<div class="stills">{"".join(_still(path) for path in stills)}</div>'


def _still(path: Path) -> str:
    name = html.escape(path.stem.split("-", 1)[1])
    return (f'<figure style="display:inline-block"><img alt="{name}" src="'
            f'{page.data_uri(path.read_bytes(), "image/png")}"><figcaption>{name}</figcaption></figure>')


STAGE = Stage(
    name="stills", summary="stills of the final checkpoint's attention heads and saliency on one evaluation frame",
    description="Overlay each attention head and the actor's and critic's perturbation saliency of the run's final "
                "checkpoint on one evaluation frame; writes RUN_DIR/analysis/stills/*.png, which the report shows.",
    options=StillsOptions, compute=compute, finish=finish, section=section, heading="Attention stills",
    suffix=".npz", checkpoints="final", figures=("stills/*.png",))
