"""Perturbation saliency frames per second: batched, the one-at-a-time loop, and the bound, side by side.

    .venv/bin/python benchmarks/saliency_throughput.py [--archs mott,adaptive,timesformer_divided] [--frames 3]

- batched: :class:`interp.saliency.Perturbation` (all 289 perturbations of a frame in one forward pass, the blur
  computed once, actor and critic from the same pass);
- loop: one batch-1 forward pass per perturbation (the public reference's way, without its bugs);
- bound: one forward pass over the same number of already perturbed inputs, i.e. the agent alone.

Targets: batched >= 30x the loop and >= 0.8 of the bound. Frames are real MiniPong observations; the loop runs on
fewer frames (``--loop-frames``) because it is slow.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from interp.agents import make_agent
from interp.envs import make_env
from interp.rollout import rollout
from interp.saliency import Perturbation, StepFunction, Steps


def minipong_steps(agent, frames: int) -> Steps:
    observations = [step.obs for step in rollout(make_env("MiniPong-v0", seed=0), "random", steps=frames)]
    inputs = {"frame": torch.from_numpy(np.stack(observations))[None], "last_action": torch.zeros(1, frames,
              dtype=torch.long), "reward": torch.zeros(1, frames), "done": torch.zeros(1, frames, dtype=torch.bool)}
    return Steps(inputs, agent.initial_state(frames))


def frames_per_second(function, frames: int) -> float:
    start = time.perf_counter()
    function()
    return frames / (time.perf_counter() - start)


def measure(name: str, method: Perturbation, frames: int, loop_frames: int) -> tuple[float, float, float]:
    """(batched, loop, bound) frames per second for one architecture."""
    torch.manual_seed(0)
    agent = make_agent(name, num_actions=3).eval()
    steps = minipong_steps(agent, frames)
    method.attribute(agent, steps.one(0))  # warm-up
    batched = frames_per_second(lambda: method.attribute(agent, steps), frames)
    loop_steps = Steps({k: v[:, :loop_frames] for k, v in steps.inputs.items()},
                       tuple(s[:loop_frames] for s in steps.state))
    loop = frames_per_second(lambda: method.attribute_one_at_a_time(agent, loop_steps), loop_frames)
    masks = method.masks(steps.inputs["frame"].shape[-1])
    prepared = [torch.cat([steps.inputs["frame"][0, i:i + 1].float(),
                           method.perturbed(steps.inputs["frame"][0, i].float(), masks)]) for i in range(frames)]

    def bound() -> None:
        with torch.no_grad():
            for i, candidates in enumerate(prepared):
                StepFunction(agent, steps.one(i))(candidates)

    return batched, loop, frames_per_second(bound, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="mott,adaptive,timesformer_divided")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--loop-frames", type=int, default=1)
    args = parser.parse_args()
    method = Perturbation()
    print(f"{'architecture':<22} {'batched f/s':>12} {'loop f/s':>10} {'bound f/s':>10} {'vs loop':>8} {'vs bound':>9}")
    for name in args.archs.split(","):
        batched, loop, bound = measure(name, method, args.frames, args.loop_frames)
        print(f"{name:<22} {batched:>12.2f} {loop:>10.3f} {bound:>10.2f} {batched / loop:>7.1f}x "
              f"{batched / bound:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
