"""V-trace off-policy corrections (Espeholt et al. 2018, "IMPALA", section 4.1), in the paper's conventions.

With importance ratios ``rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t))`` and ``c_t = min(c_bar, pi / mu)``:

    delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
    v_s     = V(x_s) + delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1}))          (computed backwards)
    A_s     = rho^pg_s (r_s + gamma_s v_{s+1} - V(x_s))                        (policy-gradient advantage)

Shapes are time-major: ``[T, B]`` (logits ``[T, B, A]``), the bootstrap value ``V(x_T)`` is ``[B]``; a discount of
0 cuts the recursion at an episode's end.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F


class VTraceReturns(NamedTuple):
    vs: torch.Tensor
    """value targets ``v_s`` ``[T, B]``"""
    pg_advantages: torch.Tensor
    """policy-gradient advantages ``[T, B]``"""
    log_rhos: torch.Tensor
    """log importance ratios ``log pi(a|x) - log mu(a|x)`` ``[T, B]``"""


def action_log_probs(policy_logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[action]``: ``[T, B, A]``, ``[T, B]`` -> ``[T, B]``."""
    return torch.gather(F.log_softmax(policy_logits, dim=-1), -1, actions.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def from_logits(
    behavior_policy_logits: torch.Tensor,
    target_policy_logits: torch.Tensor,
    actions: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """V-trace targets and advantages from the behaviour (actor) and target (learner) policy logits.

    Args:
        behavior_policy_logits: ``[T, B, A]`` logits of the policy that chose the actions (mu).
        target_policy_logits: ``[T, B, A]`` logits of the policy being learned (pi).
        actions: ``[T, B]`` the actions taken.
        discounts: ``[T, B]`` gamma, 0 where the episode ended after step t.
        rewards: ``[T, B]`` reward after step t.
        values: ``[T, B]`` V(x_t) under the target policy's value function.
        bootstrap_value: ``[B]`` V(x_T).
        clip_rho_threshold: rho_bar (None: no clipping); ``c_bar`` is fixed at 1 as in the paper's experiments.
        clip_pg_rho_threshold: the clipping of the ratio in the policy-gradient advantage.
    """
    log_rhos = action_log_probs(target_policy_logits, actions) - action_log_probs(behavior_policy_logits, actions)
    return from_importance_weights(log_rhos, discounts, rewards, values, bootstrap_value, clip_rho_threshold,
                                   clip_pg_rho_threshold)


@torch.no_grad()
def from_importance_weights(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """V-trace from log importance ratios ``[T, B]``; see :func:`from_logits`."""
    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos.clamp(max=clip_rho_threshold) if clip_rho_threshold is not None else rhos
    cs = rhos.clamp(max=1.0)
    next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * next_values - values)

    corrections = torch.zeros_like(bootstrap_value)  # v_{s+1} - V(x_{s+1})
    vs_minus_values = []
    for t in reversed(range(values.shape[0])):
        corrections = deltas[t] + discounts[t] * cs[t] * corrections
        vs_minus_values.append(corrections)
    vs = torch.stack(vs_minus_values[::-1]) + values

    next_vs = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = rhos.clamp(max=clip_pg_rho_threshold) if clip_pg_rho_threshold is not None else rhos
    pg_advantages = pg_rhos * (rewards + discounts * next_vs - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages, log_rhos=log_rhos)
