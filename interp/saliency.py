"""Saliency for every agent, one calling convention: ``method.attribute(agent, steps) -> {"actor", "critic"}``.

``steps`` (:class:`Steps`) holds ``N`` evaluated frames with the rest of their step inputs and each frame's
pre-step agent state (see :func:`interp.evalset.pre_step_state`): recurrent and memory agents are explained at the
current frame with the state they had before it held fixed. Every method returns float32 maps ``[N, S, S]`` for
the actor (policy logits) and the critic (value).

- ``perturbation``: Greydanus et al. (2017), thesis eqs. 2.37-2.39. A Gaussian mask (sigma 5, peak 1) centred every
  ``stride`` pixels blends the frame with its Gaussian blur (sigma 3); the score is
  ``0.5 * ||logits - perturbed logits||^2`` (critic: on the value). All perturbations of a frame go through the
  agent in one batched pass (or a few, ``batch_size``) with the blurred frame computed once; the score grid, whose
  points sit on pixels ``0, stride, 2 * stride, ...``, is interpolated bilinearly onto every pixel.
- ``gradient``, ``integrated_gradients``, ``smoothgrad``, ``occlusion``: captum's Saliency, IntegratedGradients,
  NoiseTunnel(Saliency) and Occlusion on the chosen action's logit (actor) and on the value (critic), summed in
  absolute value over the stacked frames.
- ``lrp``: layer-wise relevance propagation with zennit (:mod:`interp.lrp`), signed relevance summed over the
  stacked frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

from interp.lrp import LRP
from interp.steps import StepFunction, Steps


@dataclass(frozen=True)
class Perturbation:
    """Greydanus et al. perturbation saliency (see the module docstring)."""

    stride: int = 5
    mask_sigma: float = 5.0
    blur_sigma: float = 3.0
    newest_only: bool = False
    """perturb only the newest of the stacked frames (default: every stacked frame at the location)"""
    batch_size: int = 64
    """perturbed inputs per forward pass (more is slower on a CPU: activations above glibc's 32 MB mmap threshold
    are mapped and page-faulted afresh by every operation, 2x the time of the TimeSformer's batch of 289)"""
    name: str = "perturbation"

    def centres(self, size: int) -> np.ndarray:
        return np.arange(0, size, self.stride)

    def masks(self, size: int) -> torch.Tensor:
        """``[G * G, S, S]`` Gaussian masks (peak 1), row-major over the centres."""
        return _gaussian_masks(self.stride, self.mask_sigma, size)

    def _masks(self, size: int) -> torch.Tensor:
        grid = torch.from_numpy(self.centres(size)).float()
        pixels = torch.arange(size, dtype=torch.float32)
        along = torch.exp(-((pixels[None, :] - grid[:, None]) ** 2) / (2 * self.mask_sigma**2))  # [G, S]
        return (along[:, None, :, None] * along[None, :, None, :]).reshape(-1, size, size)

    def blur(self, frame: torch.Tensor) -> torch.Tensor:
        """Gaussian blur (sigma ``blur_sigma``) of each stacked frame ``[C, S, S]``."""
        blurred = [cv2.GaussianBlur(channel, (0, 0), self.blur_sigma) for channel in frame.numpy()]
        return torch.from_numpy(np.stack(blurred))

    def perturbed(self, frame: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``frame`` float ``[C, S, S]`` -> ``[K, C, S, S]``: the frame blended with its blur under each mask."""
        change = self.blur(frame) - frame  # frame * (1 - M) + blur * M  ==  frame + (blur - frame) * M
        if self.newest_only:
            change[:-1] = 0
        return torch.addcmul(frame, change[None], masks[:, None])

    def upsample(self, scores: torch.Tensor, size: int) -> torch.Tensor:
        """Score grids ``[..., G, G]`` (points on pixels 0, stride, ...) -> ``[..., S, S]``, bilinear."""
        weights = torch.from_numpy(_linear_weights(self.centres(size), size)).to(scores.dtype)  # [S, G]
        return weights @ scores @ weights.T

    @torch.no_grad()
    def attribute(self, agent, steps: Steps) -> dict[str, np.ndarray]:
        size = steps.inputs["frame"].shape[-1]
        masks = self.masks(size)
        grid = len(self.centres(size))
        actor, critic = [], []
        for index in range(len(steps)):
            step = steps.one(index)
            frame = step.inputs["frame"][0, 0].float().cpu()
            candidates = torch.cat([frame[None], self.perturbed(frame, masks)]).to(step.inputs["frame"].device)
            function = StepFunction(agent, step)
            logits, values = zip(*(function(chunk) for chunk in candidates.split(self.batch_size)), strict=True)
            logits, values = torch.cat(logits).cpu(), torch.cat(values).cpu()
            actor.append(0.5 * ((logits[1:] - logits[0]) ** 2).sum(-1).view(grid, grid))
            critic.append(0.5 * ((values[1:] - values[0]) ** 2).view(grid, grid))
        return {"actor": self.upsample(torch.stack(actor), size).float().numpy(),
                "critic": self.upsample(torch.stack(critic), size).float().numpy()}

    @torch.no_grad()
    def attribute_one_at_a_time(self, agent, steps: Steps) -> dict[str, np.ndarray]:
        """The slow reference (as greydanus/visualize_atari, without its bugs): one batch-1 forward pass per
        perturbation, the blur recomputed each time. For tests and benchmarks."""
        size = steps.inputs["frame"].shape[-1]
        masks = self.masks(size)
        grid = len(self.centres(size))
        actor, critic = [], []
        for index in range(len(steps)):
            step = steps.one(index)
            function = StepFunction(agent, step)
            frame = step.inputs["frame"][0, 0].float().cpu()
            logits0, value0 = function(frame[None].to(step.inputs["frame"].device))
            scores_actor, scores_critic = [], []
            for mask in masks:
                logits, value = function(self.perturbed(frame, mask[None]).to(step.inputs["frame"].device))
                scores_actor.append(float(0.5 * ((logits - logits0) ** 2).sum()))
                scores_critic.append(float(0.5 * ((value - value0) ** 2).sum()))
            actor.append(torch.tensor(scores_actor, dtype=torch.float64).view(grid, grid))
            critic.append(torch.tensor(scores_critic, dtype=torch.float64).view(grid, grid))
        return {"actor": self.upsample(torch.stack(actor), size).float().numpy(),
                "critic": self.upsample(torch.stack(critic), size).float().numpy()}


@lru_cache(maxsize=8)
def _gaussian_masks(stride: int, sigma: float, size: int) -> torch.Tensor:
    return Perturbation(stride=stride, mask_sigma=sigma)._masks(size)


def _linear_weights(centres: np.ndarray, size: int) -> np.ndarray:
    """``[S, G]`` linear interpolation weights from grid points at pixel positions ``centres`` to every pixel;
    pixels beyond the last point take its value."""
    weights = np.zeros((size, len(centres)), dtype=np.float32)
    for pixel in range(size):
        right = int(np.searchsorted(centres, pixel, side="right"))
        if right == 0:
            weights[pixel, 0] = 1.0
        elif right == len(centres):
            weights[pixel, -1] = 1.0
        else:
            left = right - 1
            fraction = (pixel - centres[left]) / (centres[right] - centres[left])
            weights[pixel, left], weights[pixel, right] = 1 - fraction, fraction
    return weights


@dataclass(frozen=True)
class CaptumMethod:
    """A captum attribution on the chosen action's logit (actor) and on the value (critic)."""

    name: str
    kind: str
    """``saliency``, ``integrated_gradients``, ``smoothgrad`` or ``occlusion``"""
    steps: int = 32
    """integration steps (integrated gradients)"""
    samples: int = 16
    """noisy samples (smoothgrad)"""
    noise: float = 0.1
    """smoothgrad noise, as a fraction of the frame's 0-255 range"""
    window: int = 8
    """occlusion window (pixels, over all stacked frames), stride half of it"""
    seed: int = 0
    """smoothgrad's noise is drawn from this seed (plus the frame's index): the same maps every time"""
    batch_size: int = 32
    """inputs per gradient pass (smoothgrad's noisy copies counted)"""

    def _explainer(self, forward, channels: int):
        from captum.attr import IntegratedGradients, Occlusion, Saliency

        if self.kind in ("saliency", "smoothgrad"):
            return Saliency(forward), {"abs": True}
        if self.kind == "integrated_gradients":
            return IntegratedGradients(forward), {"n_steps": self.steps, "internal_batch_size": self.steps}
        if self.kind == "occlusion":
            return Occlusion(forward), {"sliding_window_shapes": (channels, self.window, self.window),
                                        "strides": (channels, self.window // 2, self.window // 2),
                                        "perturbations_per_eval": 64}
        raise ValueError(f"unknown captum method {self.kind!r}")

    def _inputs(self, frames: torch.Tensor, first: int) -> torch.Tensor:
        """The frames ``[n, C, S, S]``; for SmoothGrad, ``samples`` noisy copies of each, one frame's after the
        other's, the noise drawn as captum's NoiseTunnel draws it but from a CPU generator seeded ``seed + index``
        for the frame at ``index = first, first + 1, ...`` of the steps (the same maps every time, in any batch and
        on every device, since a CUDA generator draws other numbers; and no random state of torch's touched)."""
        if self.kind != "smoothgrad":
            return frames
        spread = torch.full((self.samples, *frames.shape[1:]), self.noise * 255.0)
        noise = [torch.normal(0.0, spread, generator=torch.Generator().manual_seed(self.seed + first + offset))
                 for offset in range(len(frames))]
        return frames.repeat_interleave(self.samples, dim=0) + torch.cat(noise).to(frames.device)

    def _frames_per_pass(self) -> int:
        """Steps explained together: gradients of many at once (``batch_size`` inputs per pass, SmoothGrad's copies
        counted); integrated gradients and occlusion one step at a time, since captum expands those batches in
        orders of its own."""
        if self.kind in ("integrated_gradients", "occlusion"):
            return 1
        return max(1, self.batch_size // (self.samples if self.kind == "smoothgrad" else 1))

    def attribute(self, agent, steps: Steps) -> dict[str, np.ndarray]:
        maps = {"actor": [], "critic": []}
        per_pass = self._frames_per_pass()
        for first in range(0, len(steps), per_pass):
            chunk = steps.take(torch.arange(first, min(first + per_pass, len(steps))))
            function = StepFunction(agent, chunk)
            frames = chunk.inputs["frame"][0].float()
            with torch.no_grad():
                actions = function(frames)[0].argmax(-1)
            inputs = self._inputs(frames, first)
            copies = len(inputs) // len(frames)
            heads = {"actor": (lambda x, f=function: f(x)[0], actions.repeat_interleave(copies)),
                     "critic": (lambda x, f=function: f(x)[1][:, None], 0)}
            for target_name, (forward, target) in heads.items():
                explainer, options = self._explainer(forward, frames.shape[1])
                attribution = explainer.attribute(inputs.clone().requires_grad_(True), target=target, **options)
                attribution = attribution.detach().abs().reshape(len(frames), copies, *frames.shape[1:])
                maps[target_name].append(attribution.mean(dim=1).sum(dim=1).cpu())
        return {k: torch.cat(v).float().numpy() for k, v in maps.items()}


METHODS = {
    "perturbation": Perturbation(),
    "gradient": CaptumMethod("gradient", "saliency"),
    "integrated_gradients": CaptumMethod("integrated_gradients", "integrated_gradients"),
    "smoothgrad": CaptumMethod("smoothgrad", "smoothgrad"),
    "occlusion": CaptumMethod("occlusion", "occlusion"),
    "lrp": LRP(),
}
