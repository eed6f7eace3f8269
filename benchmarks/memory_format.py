"""Channels-first against channels-last vision networks, side by side: learner and actor milliseconds per call.

    .venv/bin/python benchmarks/memory_format.py [--archs baseline,timesformer_divided,mott,adaptive]
                                                 [--precisions fp32,bf16] [--repeats 5]

For each agent, two copies with the same weights differ only in the memory format of their vision networks (the
Nature CNN or the IMPALA ResNet, :meth:`interp.agents.layers.ChannelsLastConvNet.set_memory_format`). Measured
alternately, one torch thread, median of ``--repeats``, under each precision's autocast as ``interp train`` runs
it: a learner step (forward and backward over ``T=21 x B=16`` steps, as ``interp train`` with its defaults) and an
actor step (``T=1 x B=8`` under ``torch.no_grad()``). ``timesformer_divided`` is the quick start's agent (42x42
frames, narrow ResNet); the others use their defaults on 84x84 frames.

Then the frames' way into channels-last memory, side by side: torch's strided copy against
:func:`interp.agents.layers.channels_last` (OpenCV's ``cv2.merge``), on an actor's and a learner's batch of stacked
84x84 frames.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from interp import precision
from interp.agents import make_agent
from interp.agents.layers import ChannelsLastConvNet, channels_last

QUICKSTART_TIMESFORMER = {"obs_shape": (4, 42, 42), "patch_embedding": "resnet", "resnet_channels": [8, 16, 16],
                          "mem_len": 4, "embed_dim": 32}


def step_inputs(agent, steps: int, batch: int) -> dict:
    return {"frame": torch.randint(0, 256, (steps, batch, *agent.obs_shape), dtype=torch.uint8),
            "last_action": torch.zeros(steps, batch, dtype=torch.long), "reward": torch.zeros(steps, batch),
            "done": torch.zeros(steps, batch, dtype=torch.bool)}


def learner_step(agent, inputs: dict) -> None:
    outputs, _ = agent(inputs, agent.initial_state(inputs["done"].shape[1]))
    (outputs["policy_logits"].sum() + outputs["baseline"].sum()).backward()


def actor_step(agent, inputs: dict) -> None:
    with torch.no_grad():
        agent(inputs, agent.initial_state(inputs["done"].shape[1]))


def milliseconds(function, agent, inputs: dict) -> float:
    start = time.perf_counter()
    function(agent, inputs)
    return (time.perf_counter() - start) * 1000


def compare(function, first, last, inputs: dict, chosen: str, repeats: int) -> tuple[float, float]:
    """Median milliseconds of ``function`` on the channels-first and the channels-last copy, measured alternately."""
    times = {"first": [], "last": []}
    with precision.autocast(chosen, "cpu"):
        for agent in (first, last):  # warm-up
            function(agent, inputs)
        for _ in range(repeats):
            times["first"].append(milliseconds(function, first, inputs))
            times["last"].append(milliseconds(function, last, inputs))
    return statistics.median(times["first"]), statistics.median(times["last"])


def compare_interleaving(repeats: int) -> None:
    """Median milliseconds of torch's channels-last copy and of :func:`channels_last` on the same frames."""
    print(f"\n{'frames':<22} {'dtype':<9} {'torch copy ms':>14} {'cv2.merge ms':>13} {'speed-up':>9}")
    for batch in (8, 21 * 16):
        for dtype in (torch.uint8, torch.bfloat16, torch.float32):
            frames = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8).to(dtype)
            times = {"torch": [], "cv2": []}
            for _ in range(repeats + 1):  # the first of each is a warm-up
                for name, interleave in (("torch", lambda x: x.contiguous(memory_format=torch.channels_last)),
                                         ("cv2", channels_last)):
                    start = time.perf_counter()
                    for _ in range(10):
                        interleave(frames)
                    times[name].append((time.perf_counter() - start) * 100)
            torch_ms, cv2_ms = (statistics.median(times[name][1:]) for name in ("torch", "cv2"))
            print(f"{f'[{batch}, 4, 84, 84]':<22} {str(dtype).removeprefix('torch.'):<9} {torch_ms:>14.3f} "
                  f"{cv2_ms:>13.3f} {torch_ms / cv2_ms:>8.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,timesformer_divided,mott,adaptive")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{'architecture':<22} {'precision':<9} {'call':<8} {'channels-first ms':>18} {'channels-last ms':>17} "
          f"{'speed-up':>9}")
    for arch in args.archs.split(","):
        options = QUICKSTART_TIMESFORMER if arch == "timesformer_divided" else {}
        last = make_agent(arch, num_actions=3, **options)
        first = copy.deepcopy(last)
        for module in first.modules():
            if isinstance(module, ChannelsLastConvNet):
                module.set_memory_format(torch.contiguous_format)
        for chosen in args.precisions.split(","):
            for name, function, inputs in (("learner", learner_step, step_inputs(last, 21, 16)),
                                           ("actor", actor_step, step_inputs(last, 1, 8))):
                first_ms, last_ms = compare(function, first, last, inputs, chosen, args.repeats)
                print(f"{arch:<22} {chosen:<9} {name:<8} {first_ms:>18.1f} {last_ms:>17.1f} "
                      f"{first_ms / last_ms:>8.2f}x", flush=True)
    compare_interleaving(args.repeats)


if __name__ == "__main__":
    main()
