"""ATOM frames per second: pass 2 batched over (frame, neuron) rows against a per-neuron loop, side by side.

    .venv/bin/python benchmarks/atom_throughput.py [--archs baseline,mott] [--frames 8] [--checkpoint CKPT]

- batched: :class:`interp.atom.Atom` (every selected neuron of a batch of frames in one forward and one backward
  pass, 64 rows each);
- loop: the same computation with one forward and one backward pass per selected neuron (``batch_size=1``), the way
  a per-neuron implementation of the paper goes.

Both share pass 1. Frames are real MiniPong observations with the pre-step state of each agent; the architectures
are freshly initialised with seed 0 unless ``--checkpoint`` names a trained one (which also sets the
architecture). Target: batched >= 5x the loop. The mean number of selected neurons per frame is printed because the
ratio grows with it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from interp.agents import load_agent, make_agent
from interp.atom import Atom
from interp.envs import make_env
from interp.rollout import rollout
from interp.steps import Steps


def minipong_steps(agent, frames: int) -> tuple[Steps, np.ndarray]:
    """``frames`` MiniPong steps of a random policy with their object masks ``[N, G, S, S]``."""
    played = list(rollout(make_env("MiniPong-v0", seed=0, object_masks=True), "random", steps=frames))
    observations = [step.obs for step in played]
    masks = [np.stack([step.info["object_masks"][name] for name in sorted(step.info["object_masks"])])
             for step in played]
    inputs = {"frame": torch.from_numpy(np.stack(observations))[None],
              "last_action": torch.zeros(1, frames, dtype=torch.long), "reward": torch.zeros(1, frames),
              "done": torch.zeros(1, frames, dtype=torch.bool)}
    return Steps(inputs, agent.initial_state(frames)), np.stack(masks)


def measure(agent, frames: int) -> tuple[float, float, float]:
    """(batched, loop) frames per second and the mean number of selected neurons."""
    steps, masks = minipong_steps(agent, frames)
    Atom().neuron_relevance(agent, steps.take(torch.tensor([0])), masks[:1])  # warm-up
    start = time.perf_counter()
    batched = Atom().neuron_relevance(agent, steps, masks)
    batched_fps = frames / (time.perf_counter() - start)
    start = time.perf_counter()
    loop = Atom(batch_size=1).neuron_relevance(agent, steps, masks)
    loop_fps = frames / (time.perf_counter() - start)
    for one, other in zip(batched, loop, strict=True):  # the same numbers, or the comparison means nothing
        assert torch.allclose(one["rbar"], other["rbar"], rtol=1e-3, atol=1e-6)
    return batched_fps, loop_fps, float(np.mean([len(f["neurons"]) for f in batched]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,mott,timesformer_divided")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--checkpoint", help="a trained checkpoint instead of freshly initialised agents")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        agents = {args.checkpoint: load_agent(args.checkpoint).eval()}
    else:
        agents = {}
        for name in args.archs.split(","):
            torch.manual_seed(0)
            agents[name] = make_agent(name, num_actions=3).eval()
    print(f"ATOM on {args.frames} MiniPong frames, {args.threads} threads")
    print(f"{'agent':<28}{'neurons/frame':>14}{'batched f/s':>13}{'loop f/s':>10}{'ratio':>8}")
    for label, agent in agents.items():
        batched, loop, neurons = measure(agent, args.frames)
        print(f"{label[-28:]:<28}{neurons:>14.1f}{batched:>13.2f}{loop:>10.2f}{batched / loop:>7.1f}x")


if __name__ == "__main__":
    main()
