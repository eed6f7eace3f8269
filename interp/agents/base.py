"""The interface every agent shares, in the IMPALA/TorchBeast convention (time-major ``[T, B, ...]``).

``agent.initial_state(B)`` gives the state (a tuple of batch-first tensors; empty for feed-forward agents).
``agent(inputs, state) -> (outputs, new_state)`` with

- inputs: ``frame`` uint8 ``[T, B, C, H, W]``, ``last_action`` int64 ``[T, B]``, ``reward`` float ``[T, B]``,
  ``done`` bool ``[T, B]`` (True where a step starts a new episode: the state is reset before that step), plus
  any per-step tensors named in ``agent.extra_inputs``;
- outputs: ``policy_logits`` ``[T, B, A]``, ``baseline`` ``[T, B]``, ``action`` ``[T, B]`` (sampled in training
  mode, the most likely action in eval mode), plus the ``extra_inputs`` the agent produced while acting, which a
  trainer stores with the rollout and feeds back when learning.

``T = 1`` when acting, ``T = unroll`` when learning; the same weights and state give the same outputs either way.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from interp.agents.conservative import proportional
from interp.hooks import HookPoint

State = tuple[torch.Tensor, ...]


INITIALISATIONS = ("torch", "orthogonal")


@dataclass(frozen=True)
class AgentConfig:
    """Options every agent has."""

    scale_frames: bool = False
    """divide frames by 255, as SB3, CleanRL and TorchBeast do. The thesis found not scaling slightly better (4.2.4),
    but RMSProp's steps do not shrink with the inputs' scale: unscaled, a first-layer step moves its outputs 255
    times further (README, "Training on ALE games")"""
    init: str = "torch"
    """``torch``: each layer's PyTorch default; ``orthogonal``: the Atari baselines' (SB3, CleanRL): orthogonal
    weights with gain sqrt(2), 0.01 for the policy layer and 1 for the value layer, zero biases (layers built to
    start at zero, and the GTrXL gates' biases, keep their start). PyTorch's default draws weights with a third of
    the variance that keeps a ReLU layer's output as varied as its input, so through the Nature CNN the
    differences between two frames shrink ~10x before the heads"""

    def __post_init__(self) -> None:
        """Every option has its field's type (``true``/``false`` written as text are read as booleans, a list as
        a tuple; anything else of another type is refused), and every size an agent takes (a count of layers,
        heads, steps, channels...) is a whole number >= 1."""
        hints = typing.get_type_hints(type(self))
        for field in fields(self):
            object.__setattr__(self, field.name, _typed(field.name, getattr(self, field.name), hints[field.name]))
        if self.init not in INITIALISATIONS:
            raise ValueError(f"init must be one of {INITIALISATIONS}, got {self.init!r}")
        for field in fields(self):
            value = getattr(self, field.name)
            sizes = value if isinstance(value, tuple | list) else (value,)
            if not isinstance(value, bool) and any(isinstance(v, int) for v in sizes) and not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
                raise ValueError(f"{field.name} must be whole numbers >= 1, got {value!r}")


def _typed(name: str, value, kind):
    """``value`` as the type ``kind`` of the option ``name`` (see :meth:`AgentConfig.__post_init__`)."""
    members = [k for k in typing.get_args(kind) if k is not type(None)] if typing.get_origin(kind) in (
        typing.Union, types.UnionType) else [kind]
    if value is None and len(members) < len(typing.get_args(kind)):
        return value
    kind = members[0]
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if typing.get_origin(kind) is tuple and isinstance(value, list | tuple):
        return tuple(value)
    plain = typing.get_origin(kind) or kind
    number = kind is float and isinstance(value, int) and not isinstance(value, bool)
    if not (number or isinstance(value, plain)) or (plain is int and isinstance(value, bool)):
        expected = {bool: "true or false", int: "a whole number", float: "a number", str: "a name"}.get(plain, plain)
        raise ValueError(f"{name} takes {expected}, got {value!r}")
    return float(value) if number else value


class Agent(nn.Module):
    """Base class: observation handling, the policy and value heads, and action selection."""

    name: ClassVar[str]
    Config: ClassVar[type[AgentConfig]] = AgentConfig
    extra_inputs: ClassVar[dict[str, str]] = {}
    """per-step tensors an agent emits when acting and takes back when learning: name -> description"""

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: AgentConfig):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.num_actions = num_actions
        self.config = config
        self.hook_features = HookPoint("features")
        """the layer F_c whose output ``[..., F]`` the policy and value heads read (the TimeSformer's heads read the
        previous reward and action beside it; see :mod:`interp.atom`)"""
        self.hook_reward = HookPoint("step_input")
        self.hook_last_action = HookPoint("step_input")

    def describe(self) -> dict:
        """What rebuilds the agent: name, observation shape, number of actions and config."""
        return {"name": self.name, "obs_shape": list(self.obs_shape), "num_actions": self.num_actions,
                "config": asdict(self.config)}

    def initial_state(self, batch_size: int) -> State:
        return ()

    @property
    def state_horizon(self) -> int | None:
        """How many of the latest steps the state depends on (None: all of them, through a recurrence): replaying
        those from the initial state gives the state a whole history gives (:func:`interp.evalset.pre_step_state`)."""
        return None

    def forward(self, inputs: dict[str, torch.Tensor], state: State) -> tuple[dict[str, torch.Tensor], State]:
        raise NotImplementedError

    # helpers for subclasses

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def frames(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[T, B, C, H, W]`` (uint8, or float in 0-255 for saliency) -> ``[T * B, C, H, W]`` in the weights' dtype,
        or in autocast's dtype where autocast is on (the first layer would cast them anyway; converting once, before
        scaling, halves the memory the largest tensor of a training step moves)."""
        frame = inputs["frame"]
        if tuple(frame.shape[2:]) != self.obs_shape:
            raise ValueError(f"{self.name} agent expects frames {self.obs_shape}, got {tuple(frame.shape[2:])}")
        kind = frame.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else self.dtype
        frame = frame.flatten(0, 1).to(dtype)
        return proportional(lambda frame: frame / 255.0, frame) if self.config.scale_frames else frame

    def reward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The previous reward ``[T, B]``, clipped to [-1, 1] as the agent sees it."""
        return self.hook_reward(inputs["reward"].to(self.dtype).clamp(-1.0, 1.0))

    def last_action_one_hot(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.hook_last_action(F.one_hot(inputs["last_action"].long(), self.num_actions).to(self.dtype))

    def outputs(self, policy_logits: torch.Tensor, baseline: torch.Tensor, **extra: torch.Tensor) -> dict:
        """``policy_logits [T, B, A]`` and ``baseline [T, B]`` -> the outputs dict, with the action chosen."""
        if self.training:
            flat = torch.multinomial(F.softmax(policy_logits.flatten(0, 1).float(), dim=-1), 1)
            action = flat.view(policy_logits.shape[:2])
        else:
            action = policy_logits.argmax(dim=-1)
        return {"policy_logits": policy_logits, "baseline": baseline, "action": action, **extra}


def reset_where(done: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Zero the batch rows of ``state`` (batch-first) where ``done`` ``[B]`` is True."""
    return torch.where(done.view(-1, *([1] * (state.dim() - 1))), torch.zeros_like(state), state)


@torch.no_grad()
def orthogonal_init_(agent: Agent) -> Agent:
    """The ``orthogonal`` initialisation of :class:`AgentConfig`, in place."""
    for name, module in agent.named_modules():
        if not isinstance(module, nn.Linear | nn.Conv2d) or not module.weight.any():  # zero by design
            continue
        gain = {"actor_critic.policy": 0.01, "actor_critic.baseline": 1.0}.get(name, math.sqrt(2))
        module.weight.copy_(nn.init.orthogonal_(torch.empty(module.weight.shape), gain))  # any memory format
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    for module in agent.modules():
        if hasattr(module, "reset_gate_bias"):
            module.reset_gate_bias()
    return agent


HEADS = ("actor_critic", "q_values")


class ActorCritic(nn.Module):
    """The policy and value head from the core output: linear policy logits (the actor) and value (the critic); or,
    for value-based agents (``q_values``), one linear layer of action values, which play the policy logits' part
    (the greedy action is the most valued) while the value is their maximum, the greedy action's value."""

    def __init__(self, in_features: int, num_actions: int, head: str = "actor_critic"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.policy = nn.Linear(in_features, num_actions)
        self.baseline = nn.Linear(in_features, 1) if head == "actor_critic" else None

    def forward(self, core: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.policy(core)
        if self.baseline is None:
            return logits, logits.max(dim=-1).values
        return logits, self.baseline(core).squeeze(-1)
