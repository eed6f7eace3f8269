"""V-trace against a direct, slow implementation of the paper's definition."""

import numpy as np
import pytest
import torch

from trainers import vtrace


def paper_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, pg_rho_bar):
    """IMPALA eq. (1): v_s = V(x_s) + sum_{t>=s} (prod_{i=s}^{t-1} gamma_i c_i) delta_t V, one sum per s."""
    steps, batch = rewards.shape
    rhos = np.exp(log_rhos)
    clipped, cs = np.minimum(rho_bar, rhos), np.minimum(1.0, rhos)
    values_ext = np.concatenate([values, bootstrap[None]], axis=0)
    vs = np.zeros((steps, batch))
    for b in range(batch):
        for s in range(steps):
            total = values[s, b]
            for t in range(s, steps):
                product = 1.0
                for i in range(s, t):
                    product *= discounts[i, b] * cs[i, b]
                delta = clipped[t, b] * (rewards[t, b] + discounts[t, b] * values_ext[t + 1, b] - values[t, b])
                total += product * delta
            vs[s, b] = total
    vs_ext = np.concatenate([vs, bootstrap[None]], axis=0)
    advantages = np.minimum(pg_rho_bar, rhos) * (rewards + discounts * vs_ext[1:] - values)
    return vs, advantages


@pytest.mark.parametrize("rho_bar, pg_rho_bar", [(1.0, 1.0), (0.5, 2.0), (10.0, 10.0)])
def test_matches_the_paper_definition(rho_bar, pg_rho_bar):
    rng = np.random.default_rng(0)
    steps, batch, actions = 7, 3, 4
    behaviour = rng.normal(size=(steps, batch, actions))
    target = rng.normal(size=(steps, batch, actions))
    taken = rng.integers(actions, size=(steps, batch))
    discounts = 0.9 * (rng.random((steps, batch)) > 0.2)  # some episode ends
    rewards = rng.normal(size=(steps, batch))
    values = rng.normal(size=(steps, batch))
    bootstrap = rng.normal(size=batch)
    result = vtrace.from_logits(*(torch.tensor(x) for x in (behaviour, target, taken, discounts, rewards, values,
                                                              bootstrap)), rho_bar, pg_rho_bar)

    def log_softmax(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    pick = np.take_along_axis
    log_rhos = (pick(log_softmax(target), taken[..., None], -1) - pick(log_softmax(behaviour), taken[..., None], -1))[
        ..., 0]
    vs, advantages = paper_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, pg_rho_bar)
    np.testing.assert_allclose(result.log_rhos.numpy(), log_rhos, atol=1e-10)
    np.testing.assert_allclose(result.vs.numpy(), vs, atol=1e-10)
    np.testing.assert_allclose(result.pg_advantages.numpy(), advantages, atol=1e-10)


def test_on_policy_targets_are_n_step_returns():
    rng = np.random.default_rng(1)
    steps, batch = 6, 2
    logits = torch.tensor(rng.normal(size=(steps, batch, 3)))
    discounts = torch.tensor(0.95 * (rng.random((steps, batch)) > 0.3))
    rewards, values = torch.tensor(rng.normal(size=(steps, batch))), torch.tensor(rng.normal(size=(steps, batch)))
    bootstrap = torch.tensor(rng.normal(size=batch))
    result = vtrace.from_logits(logits, logits, torch.tensor(rng.integers(3, size=(steps, batch))), discounts,
                                rewards, values, bootstrap)
    for s in range(steps):
        expected, scale = torch.zeros(batch, dtype=torch.float64), torch.ones(batch, dtype=torch.float64)
        for t in range(s, steps):
            expected += scale * rewards[t]
            scale = scale * discounts[t]
        expected += scale * bootstrap
        torch.testing.assert_close(result.vs[s], expected)
