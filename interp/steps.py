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
    """The agent at one step, as a function of the frame alone: ``frames [K, C, S, S]`` (float, 0-255) ->
    ``(policy_logits [K, A], value [K])``, with the step's other inputs and pre-step state repeated K times."""

    def __init__(self, agent, step: Steps):
        if len(step) != 1:
            raise ValueError("StepFunction explains one step at a time")
        self.agent, self.step = agent, step

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = frames.shape[0]
        inputs = {k: v.expand(1, count, *v.shape[2:]) for k, v in self.step.inputs.items() if k != "frame"}
        inputs["frame"] = frames[None]
        state = tuple(s.expand(count, *s.shape[1:]).contiguous() for s in self.step.state)
        outputs, _ = self.agent(inputs, state)
        return outputs["policy_logits"][0], outputs["baseline"][0]
