"""The learner's optimizer: RMSProp as IMPALA ran it (TensorFlow 1), against the formula step by step."""

import numpy as np
import pytest
import torch

from trainers.optim import RMSpropTF


def tf1_rmsprop_loop(params: np.ndarray, grads: list[np.ndarray], lr: float, decay: float, eps: float,
                     momentum: float) -> np.ndarray:
    """tf.train.RMSPropOptimizer's dense update, written out: ms starts at 1, epsilon under the square root."""
    ms, mom = np.ones_like(params), np.zeros_like(params)
    for grad in grads:
        ms = decay * ms + (1 - decay) * grad**2
        mom = momentum * mom + lr * grad / np.sqrt(ms + eps)
        params = params - mom
    return params


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_tf_follows_tensorflow_1(momentum):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4))
    grads = [rng.normal(scale=scale, size=(3, 4)) for scale in (0.01, 1.0, 30.0, 0.5, 3.0)]
    param = torch.nn.Parameter(torch.tensor(start))
    optimizer = RMSpropTF([param], lr=6e-4, alpha=0.99, eps=0.01, momentum=momentum)
    for grad in grads:
        param.grad = torch.tensor(grad)
        optimizer.step()
    expected = tf1_rmsprop_loop(start, grads, lr=6e-4, decay=0.99, eps=0.01, momentum=momentum)
    assert np.allclose(param.detach().numpy(), expected, rtol=1e-12, atol=1e-15)


def test_first_updates_stay_near_the_learning_rate_times_the_gradient():
    """torch's RMSprop moves every parameter by ~10 lr on its first step, whatever the gradient's size; TF1's starts
    as plain SGD. This is what kept the first convolution alive on ALE Pong (README, "Training on ALE games")."""
    grad = torch.full((1000,), 0.5)
    ours, theirs = torch.nn.Parameter(torch.zeros(1000)), torch.nn.Parameter(torch.zeros(1000))
    ours.grad, theirs.grad = grad.clone(), grad.clone()
    RMSpropTF([ours], lr=1e-3, eps=0.01).step()
    torch.optim.RMSprop([theirs], lr=1e-3, alpha=0.99, eps=0.01).step()
    assert ours.detach().abs().max() == pytest.approx(1e-3 * 0.5 / np.sqrt(0.99 + 0.01 * 0.5**2 + 0.01))
    assert theirs.detach().abs().max() > 8e-3  # 16x larger: 10 lr g / (|g| + 10 eps)


def test_state_round_trips_through_a_state_dict():
    param = torch.nn.Parameter(torch.ones(5))
    optimizer = RMSpropTF([param], lr=0.1)
    param.grad = torch.arange(5.0)
    optimizer.step()
    restored = RMSpropTF([torch.nn.Parameter(param.detach().clone())], lr=0.1)
    restored.load_state_dict(optimizer.state_dict())
    assert torch.equal(restored.state_dict()["state"][0]["mean_square"], optimizer.state[param]["mean_square"])
    with pytest.raises(ValueError, match="lr > 0"):
        RMSpropTF([param], lr=-1.0)
