"""The steps an explanation method explains: ``N`` evaluated frames with their other inputs and pre-step state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

State = tuple[torch.Tensor, ...]


@dataclass
class Steps:
    """``N`` evaluated steps: inputs with ``T = 1`` (``frame [1, N, C, S, S]`` ...) and the pre-step state."""

    inputs: dict[str, torch.Tensor]
    state: State

    def __len__(self) -> int:
        return self.inputs["frame"].shape[1]

    def one(self, index: int) -> Steps:
        return Steps({k: v[:, index:index + 1] for k, v in self.inputs.items()},
                     tuple(s[index:index + 1] for s in self.state))

    def take(self, indices: torch.Tensor) -> Steps:
        """The steps at ``indices`` (long ``[K]``, repeats allowed)."""
        return Steps({k: v[:, indices] for k, v in self.inputs.items()}, tuple(s[indices] for s in self.state))

    def chunks(self, size: int) -> Iterator[Steps]:
        for start in range(0, len(self), size):
            yield self.take(torch.arange(start, min(start + size, len(self))))


class StepFunction:
    """The agent at ``N`` steps as a function of their frames alone: ``frames [N * R, C, S, S]`` (float, 0-255; the
    ``R`` frames of each step one after the other) -> ``(policy_logits [N * R, A], value [N * R])``, with each step's
    other inputs and pre-step state repeated ``R`` times."""

    def __init__(self, agent, steps: Steps):
        self.agent, self.steps = agent, steps

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        repeats, left = divmod(frames.shape[0], len(self.steps))
        if left or not repeats:
            raise ValueError(f"{frames.shape[0]} frames for {len(self.steps)} steps: not a multiple")
        inputs = {k: v.repeat_interleave(repeats, dim=1) for k, v in self.steps.inputs.items() if k != "frame"}
        inputs["frame"] = frames[None]
        state = tuple(s.repeat_interleave(repeats, dim=0) for s in self.steps.state)
        outputs, _ = self.agent(inputs, state)
        return outputs["policy_logits"][0], outputs["baseline"][0]
