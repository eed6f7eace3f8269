"""The spatio-temporal agent's query loop over a long Pong episode, with and without its query normalisation.

    .venv/bin/python docs/study/pong/query_loop.py [SCALE ...]     # default: 1 1.5 3

The untrained agent (seed 0, 42x42) steps through 3,000 frames of ALE Pong from random play, one at a time as an
actor does, with the query and answer MLPs' weight matrices multiplied by each SCALE; it prints the norm of the core
output (the next step's query source) along the way. "without" replaces the LayerNorm by the identity, the agent as
the thesis describes it.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from interp.agents import make_agent
from interp.envs import make_env

STEPS = 3000


def pong_frames() -> torch.Tensor:
    """``[STEPS, 4, 42, 42]`` uint8 frames of random play."""
    env, rng = make_env("ALE/Pong-v5", seed=0, frame_size=42), np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(STEPS):
        frames.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        if terminated or truncated:
            obs, _ = env.reset()
    return torch.from_numpy(np.stack(frames))


def core_output_norms(frames: torch.Tensor, scale: float, normalised: bool) -> list[float]:
    agent = make_agent("spatiotemporal", (4, 42, 42), 6, seed=0, scale_frames=True, init="orthogonal")
    if not normalised:
        agent.query_norm = torch.nn.Identity()
    for layer in (*agent.answerer.query[::2], *agent.answerer.answer[::2]):
        layer.weight.mul_(scale)
    state, norms = agent.initial_state(1), []
    for frame in frames:
        inputs = {"frame": frame[None, None], "last_action": torch.zeros(1, 1, dtype=torch.long),
                  "reward": torch.zeros(1, 1), "done": torch.zeros(1, 1, dtype=torch.bool)}
        _, state = agent(inputs, state)
        norms.append(state[-1].norm().item())
        if not np.isfinite(norms[-1]):
            break
    return norms


def main() -> None:
    frames = pong_frames()
    for scale in map(float, sys.argv[1:] or (1, 1.5, 3)):
        for normalised in (False, True):
            norms = core_output_norms(frames, scale, normalised)
            shown = ", ".join(f"{i + 1}: {norms[i]:.3g}" for i in (0, 9, 99, 999) if i < len(norms))
            print(f"scale {scale}, {'with' if normalised else 'without'} the LayerNorm: |core output| at step "
                  f"{shown}; last {norms[-1]:.3g} (step {len(norms)}, range after step 10 "
                  f"{min(norms[10:], default=float('nan')):.3g}-{max(norms[10:], default=float('nan')):.3g})",
                  flush=True)


if __name__ == "__main__":
    with torch.no_grad():
        main()
