"""An agent stepping through environments one step at a time: the one home of what an agent needs between steps
besides the frame (its state, the previous action and reward, which environments start an episode).

The training actors, :func:`interp.rollout.rollout` (the evaluation set, the overlay video, the dual-ball probe)
and :func:`analyses.evaluation.play` all drive agents through :class:`Stepper`; :func:`step_inputs` builds the
inputs of a forward pass wherever one is written by hand (tests, benchmarks).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from interp import precision
from interp.agents.base import Agent, State
from interp.steps import Steps

POLICIES = ("greedy", "sampled")


def step_inputs(frame: torch.Tensor, last_action: torch.Tensor | None = None, reward: torch.Tensor | None = None,
                done: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Time-major agent inputs from frames ``[T, B, C, S, S]``: ``last_action`` (int64), ``reward`` (float) and
    ``done`` (bool) ``[T, B]`` default to zeros, i.e. steps in the middle of an episode."""
    shape, device = frame.shape[:2], frame.device
    return {"frame": frame,
            "last_action": torch.zeros(shape, dtype=torch.int64, device=device) if last_action is None else last_action,
            "reward": torch.zeros(shape, device=device) if reward is None else reward,
            "done": torch.zeros(shape, dtype=torch.bool, device=device) if done is None else done}


class Stepper:
    """``agent`` stepping ``batch_size`` environments together, one batched forward pass per step.

    >>> stepper = Stepper(agent, 16, policy="sampled", generator=torch.Generator().manual_seed(0))
    >>> outputs = stepper.forward(frames)            # frames [16, C, S, S]; outputs [16, ...], "action" chosen here
    >>> ... rewards, ended = env.step(outputs["action"]) ...
    >>> stepper.advance(outputs["action"], rewards, starts)   # starts [16]: the next frame begins an episode

    Every environment starts an episode at the first step. :meth:`forward` may be called again on the same frames
    (with new weights, say): the state moves on only with :meth:`advance`. Actions are the most likely
    (``policy="greedy"``) or drawn from the policy with ``generator`` (``"sampled"``); the agent runs in eval mode.
    ``precision="bf16"`` runs the forward pass under bfloat16 autocast (the state is kept in float32).
    """

    def __init__(self, agent: Agent, batch_size: int, *, policy: str = "greedy",
                 generator: torch.Generator | None = None, precision: str = "fp32"):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.agent, self.batch_size, self.policy, self.precision = agent.eval(), batch_size, policy, precision
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.state: State = agent.initial_state(batch_size)
        """the state before the current step"""
        self.device = agent.device
        """where the state and inputs live: the agent's device when the stepper was made"""
        self.last_action = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        self.reward = torch.zeros(batch_size, device=self.device)
        self.done = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        self._next_state: State | None = None

    def inputs(self, frames: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """The current step's inputs ``[1, B, ...]`` for ``frames`` ``[B, C, S, S]``."""
        return {**step_inputs(frames.to(self.device)[None], self.last_action[None], self.reward[None],
                              self.done[None]), **{k: v[None] for k, v in extra.items()}}

    def steps(self, frames: torch.Tensor) -> Steps:
        """The current step as :class:`interp.steps.Steps` (inputs and pre-step state), for explanations."""
        return Steps(self.inputs(frames), self.state)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """The agent's outputs for the current step, ``[B, ...]``, with ``action`` chosen by the policy."""
        with precision.autocast(self.precision, self.device):
            outputs, state = self.agent(self.inputs(frames, **extra), self.state)
        self._next_state = tuple(s.float() if s.is_floating_point() else s for s in state)
        outputs = {name: value[0] for name, value in outputs.items()}
        outputs["action"] = self.choose(outputs["policy_logits"])
        return outputs

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Actions ``[B]`` from policy logits ``[B, A]``."""
        if self.policy == "greedy":
            return logits.argmax(-1)
        probabilities = F.softmax(logits.float().cpu(), dim=-1)
        return torch.multinomial(probabilities, 1, generator=self.generator)[:, 0].to(logits.device)

    def advance(self, actions: torch.Tensor, rewards, starts) -> None:
        """Move past the step :meth:`forward` computed: ``actions`` were taken, ``rewards`` ``[B]`` received, and
        where ``starts`` ``[B]`` is True the next frame begins an episode (its state, previous action and reward
        are reset)."""
        if self._next_state is None:
            raise RuntimeError("advance() needs a forward() for the step first")
        starts = torch.as_tensor(starts, dtype=torch.bool, device=self.device).reshape(self.batch_size)
        rewards = torch.as_tensor(rewards, dtype=torch.float32, device=self.device).reshape(self.batch_size)
        self.state, self._next_state = self._next_state, None
        self.last_action = torch.where(starts, 0, actions.to(self.device))
        self.reward = torch.where(starts, 0.0, rewards)
        self.done = starts

    def reset(self) -> None:
        """Every environment starts an episode at the next step."""
        self.state, self._next_state = self.agent.initial_state(self.batch_size), None
        self.last_action.zero_()
        self.reward.zero_()
        self.done.fill_(True)
