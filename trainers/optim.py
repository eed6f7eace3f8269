"""The learner's optimizers.

IMPALA's hyperparameters (Espeholt et al. 2018; ``scalable_agent``: RMSProp, decay 0.99, epsilon 0.1, momentum 0)
are those of TensorFlow 1's ``tf.train.RMSPropOptimizer``, whose update differs from ``torch.optim.RMSprop`` in two
ways that matter most in a run's first updates:

    TF1 (IMPALA):   ms <- decay ms + (1 - decay) g^2,  ms starts at 1;  step = lr g / sqrt(ms + eps)
    torch:          v  <- alpha v + (1 - alpha) g^2,   v starts at 0;   step = lr g / (sqrt(v) + eps)

With ``v`` starting at 0, torch's first update is ``lr g / (0.1 |g| + eps)``: about ``10 lr`` for every parameter
whose gradient is not tiny, whatever its size. On frames that are all positive (ALE Pong's grey background), the
gradients of a first-layer filter's weights share one sign, so ten such steps move every unit's pre-activation the
same way; a unit pushed below zero gets no gradient again, and within ~10 updates the whole first convolution is
dead (README, "Training on ALE games"). TF1's update starts as plain SGD (``lr g``) and grows only as ``ms``
learns the gradient's size.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp with TensorFlow 1 semantics: the mean square starts at one and epsilon is added under the root.

    ``ms <- alpha ms + (1 - alpha) g^2``; ``mom <- momentum mom + lr g / sqrt(ms + eps)``; ``p <- p - mom``.
    """

    def __init__(self, params: Iterable, lr: float, alpha: float = 0.99, eps: float = 0.1, momentum: float = 0.0):
        if not lr > 0 or not 0 <= alpha < 1 or not eps > 0 or not 0 <= momentum < 1:
            raise ValueError(f"RMSpropTF needs lr > 0, 0 <= alpha < 1, eps > 0, 0 <= momentum < 1; got lr={lr}, "
                             f"alpha={alpha}, eps={eps}, momentum={momentum}")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["mean_square"] = torch.ones_like(param)
                    if momentum:
                        state["momentum"] = torch.zeros_like(param)
                mean_square = state["mean_square"]
                mean_square.mul_(alpha).addcmul_(param.grad, param.grad, value=1 - alpha)
                if momentum:
                    velocity = state["momentum"]
                    velocity.mul_(momentum).addcdiv_(param.grad, (mean_square + eps).sqrt_(), value=lr)
                    param.sub_(velocity)
                else:
                    param.addcdiv_(param.grad, (mean_square + eps).sqrt_(), value=-lr)
