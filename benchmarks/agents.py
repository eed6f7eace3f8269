"""Per architecture: parameters, and inference milliseconds per step at batch 1 and batch 32, in one run.

    .venv/bin/python benchmarks/agents.py [--steps 20] [--threads N]

One step is one call with ``T = 1`` and the state carried from the previous call, under ``torch.no_grad()``, as an
actor runs it. Observations are 84x84 (the joint space-time agent also at 42x42, the thesis' setting).
"""

from __future__ import annotations

import argparse
import time

import torch

from interp.agents import AGENTS, make_agent

THESIS_PARAMETERS = {"mott": 2.18, "adaptive": 1.92, "spatiotemporal": 1.95, "spatiotemporal_oneshot": 1.95,
                     "timesformer_divided": 0.56, "timesformer_joint": 0.56}


def ms_per_step(agent, batch: int, steps: int) -> float:
    state = agent.initial_state(batch)
    frame = torch.randint(0, 256, (1, batch, *agent.obs_shape), dtype=torch.uint8)
    inputs = {"frame": frame, "last_action": torch.zeros(1, batch, dtype=torch.long),
              "reward": torch.zeros(1, batch), "done": torch.zeros(1, batch, dtype=torch.bool)}
    with torch.no_grad():
        for _ in range(3):  # warm-up
            _, state = agent(inputs, state)
        start = time.perf_counter()
        for _ in range(steps):
            _, state = agent(inputs, state)
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [(name, (4, 84, 84)) for name in AGENTS] + [("timesformer_joint", (4, 42, 42))]
    print(f"{'architecture':<24} {'obs':>6} {'params':>9} {'thesis':>7} {'ms/step B=1':>12} {'ms/step B=32':>13}")
    for name, obs in rows:
        agent = make_agent(name, obs_shape=obs, num_actions=6).eval()
        params = sum(p.numel() for p in agent.parameters()) / 1e6
        thesis = THESIS_PARAMETERS.get(name) if obs[-1] == 84 else 0.22
        thesis_text = f"{thesis:.2f}M" if thesis else "-"
        print(f"{name:<24} {obs[-1]:>4}px {params:>8.2f}M {thesis_text:>7} {ms_per_step(agent, 1, args.steps):>12.1f} "
              f"{ms_per_step(agent, 32, args.steps):>13.1f}")


if __name__ == "__main__":
    main()
