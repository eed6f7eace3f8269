"""Overlay videos: the agent plays, and each step shows the raw frame, every attention head overlaid, and the actor
and critic perturbation saliency, side by side, with the step and the return. The ``video`` stage renders the final
checkpoint's as ``RUN_DIR/analysis/video.mp4``; ``interp video CHECKPOINT --out FILE`` renders any checkpoint's."""

from __future__ import annotations

import html
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from analyses import page
from analyses.stage import Job, Stage
from interp.agents import Agent
from interp.attention import image_maps
from interp.envs import make_env
from interp.errors import UserError
from interp.files import atomic_path
from interp.hooks import record_attention
from interp.render import heatmap_overlay, titled, upscale, write_mp4
from interp.rollout import rollout
from interp.runs import Run
from interp.saliency import Perturbation

PANEL_HEIGHT = 252


def _panels(rgb: np.ndarray, attention: dict[str, np.ndarray], saliency: dict[str, np.ndarray]) -> list[np.ndarray]:
    panels = [titled(upscale(rgb, PANEL_HEIGHT), "frame")]
    for name, maps in attention.items():
        short = name.replace(".hook_weights", "").split(".")[-1]
        if maps.ndim == 4:  # [1, heads, S, S], or [1, heads, key_frames, S, S] joint: the current frame's keys
            for head in range(maps.shape[1]):
                panels.append(titled(upscale(heatmap_overlay(rgb, maps[0, head]), PANEL_HEIGHT), f"{short} h{head}"))
        elif maps.ndim == 5:
            for head in range(maps.shape[1]):
                panels.append(titled(upscale(heatmap_overlay(rgb, maps[0, head, -1]), PANEL_HEIGHT),
                                     f"{short} h{head} (now)"))
        else:  # over memory: heads x keys, oldest left
            strip = cv2.applyColorMap((maps[0] * 255).astype(np.uint8), cv2.COLORMAP_JET)
            strip = cv2.resize(cv2.cvtColor(strip, cv2.COLOR_BGR2RGB), (PANEL_HEIGHT, PANEL_HEIGHT),
                               interpolation=cv2.INTER_NEAREST)
            panels.append(titled(strip, f"{short}: heads x memory"))
    for target, values in saliency.items():
        panels.append(titled(upscale(heatmap_overlay(rgb, values[0]), PANEL_HEIGHT), f"{target} saliency"))
    return panels


def render_video(agent: Agent, env_id: str, frames: int, out: str | Path, *, seed: int = 0, png_every: int = 0,
                 saliency: Perturbation | None = None, progress: bool = True, **env_options) -> Path:
    """Play ``agent`` (greedy) for ``frames`` steps and write the overlay video; with ``png_every``, also every such
    step as a PNG beside it. The agent must have been trained on ``env_id`` (see :meth:`analyses.stage.Job.load`)."""
    if frames < 1 or png_every < 0:
        raise UserError(f"a video needs frames >= 1 and png-every >= 0, got {frames} and {png_every}")
    agent = agent.eval()
    env = make_env(env_id, seed=seed, **env_options)
    saliency = saliency or Perturbation()
    out = Path(out)
    video = []
    transitions = rollout(env, "greedy", agent=agent, seed=seed, steps=frames, render=True)
    for step in tqdm(transitions, total=frames, desc="video", unit="frame", disable=None if progress else True):
        with record_attention(agent) as records, torch.no_grad():
            agent(step.steps.inputs, step.steps.state)  # the step's forward pass again, recorded
        attention = {name: image_maps(record, agent.obs_shape[-1]) for name, record in records.items()
                     if record.tensors}
        row = np.concatenate(_panels(step.rgb, attention, saliency.attribute(agent, step.steps)), axis=1)
        caption = titled(np.zeros((0, row.shape[1], 3), np.uint8),
                         f"{env_id}  step {step.index}  return {step.episode_return:g}")
        image = np.concatenate([caption, row], axis=0)
        video.append(image)
        if png_every and step.index % png_every == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out.with_name(f"{out.stem}_{step.index:05d}.png")), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    env.close()
    return write_mp4(out, video, fps=15)


@dataclass(frozen=True)
class VideoOptions:
    frames: int = 60
    """steps the final checkpoint plays"""
    seed: int = 0
    """the environment's seed"""

    def __post_init__(self) -> None:
        if self.frames < 1 or self.seed < 0:
            raise UserError(f"a video needs frames >= 1 and a seed >= 0, got {self.frames} and {self.seed}")


def compute(job: Job) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = render_video(job.load().agent, job.environment.id, job.options.frames, Path(folder) / "video.mp4",
                            seed=job.options.seed, progress=False, **job.environment.options)
        return path.read_bytes()


def finish(run: Run, results: dict[int, Path], options: VideoOptions) -> None:
    (path,) = results.values()
    with atomic_path(run.analysis / "video.mp4", suffix=".mp4") as tmp:
        shutil.copyfile(path, tmp)


def section(run: Run) -> str:
    path = run.analysis / "video.mp4"
    if not path.exists():
        return page.missing("overlay video", f"interp video {run.directory}")
    return (f'<video controls muted loop width="100%" src="{page.data_uri(path.read_bytes(), "video/mp4")}"></video>'
            f"<p>{html.escape(run.name)}: final checkpoint playing greedily (frame, attention heads, actor and critic "
            "perturbation saliency).</p>")


STAGE = Stage(
    name="video", summary="overlay video: frame, attention heads, actor and critic saliency",
    description="Play the run's final checkpoint greedily and write RUN_DIR/analysis/video.mp4, an h264 mp4 with "
                "titled panels side by side: the raw frame, each attention head overlaid, and the actor and critic "
                "perturbation saliency (OpenCV JET heat maps alpha-blended as in the thesis), with the step and the "
                "return. Given a checkpoint file and --out FILE instead, render that checkpoint's video.",
    options=VideoOptions, compute=compute, finish=finish, section=section, heading="Overlay video",
    suffix=".mp4", checkpoints="final", uses_evalset=False, on_a_checkpoint=True,
    figures=("video.mp4",))
