"""Saliency and ATOM frames per second on each device, side by side, and how far each device's maps are from the CPU's.

    .venv/bin/python benchmarks/analysis_devices.py [--devices cpu,cuda] [--archs baseline,timesformer_divided]
        [--frames 32] [--threads 2]

Frames are ALE Pong observations of a random policy with their OCAtari object masks, at 84x84 for the baseline and
42x42 for the thesis agents (freshly initialised, seed 0, orthogonal initialisation and frames divided by 255, as
``--preset pong`` trains them). Per method: frames per second on every device (after one warm-up frame), the ratio
to the first device, and the largest difference of the maps from the first device's relative to the largest CPU
map value (ATOM: of the object shares). On CPU, ``--threads`` torch threads; on a GPU in float32 without TF32, as
the analyses compute.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from interp.agents import make_agent
from interp.atom import Atom
from interp.devices import resolve_device
from interp.envs import make_env
from interp.precision import tf32_matmuls
from interp.rollout import rollout
from interp.saliency import METHODS
from interp.steps import Steps

MEASURED = ("perturbation", "gradient", "smoothgrad", "lrp", "atom")


def pong_frames(frame_size: int, frames: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """``frames`` observations uint8 ``[N, 4, S, S]`` of a random policy on ALE Pong and their object masks."""
    env = make_env("ALE/Pong-v5", seed=0, frame_size=frame_size, object_masks=True)
    observations, masks = [], []
    for step in rollout(env, "random"):
        if all(mask.any() for mask in step.info["object_masks"].values()):  # every object on screen
            observations.append(step.obs)
            masks.append(step.info["object_masks"])
            if len(observations) == frames:
                break
    env.close()
    return torch.from_numpy(np.stack(observations)), {k: np.stack([m[k] for m in masks]) for k in masks[0]}


def steps_on(agent, frames: torch.Tensor, device: str) -> Steps:
    count = len(frames)
    inputs = {"frame": frames[None].to(device), "last_action": torch.zeros(1, count, dtype=torch.long, device=device),
              "reward": torch.zeros(1, count, device=device), "done": torch.ones(1, count, dtype=torch.bool,
                                                                                 device=device)}
    return Steps(inputs, agent.initial_state(count))


def run_method(name: str, agent, steps: Steps, masks: dict[str, np.ndarray]) -> np.ndarray:
    if name == "atom":
        table = Atom().compute(agent, steps, masks)
        return table[table.metric == "hierarchical_share"]["value"].to_numpy()
    return np.stack([METHODS[name].attribute(agent, steps)[target] for target in ("actor", "critic")])


@tf32_matmuls(False)  # as the analyses run (analyses.stage.exact_arithmetic)
def timed(name: str, agent, steps: Steps, masks: dict[str, np.ndarray], device: str) -> tuple[float, np.ndarray]:
    run_method(name, agent, steps.take(torch.tensor([0])), {k: v[:1] for k, v in masks.items()})  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run_method(name, agent, steps, masks)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(steps) / (time.perf_counter() - start), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="cpu,auto")
    parser.add_argument("--archs", default="baseline,timesformer_divided")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = list(dict.fromkeys(resolve_device(d) for d in args.devices.split(",")))
    print(f"saliency and ATOM on {args.frames} ALE Pong frames; devices {', '.join(devices)}; "
          f"{args.threads} CPU threads")
    print(f"{'agent':<22}{'method':<14}" + "".join(f"{d + ' f/s':>14}" for d in devices)
          + "".join(f"{d + '/' + devices[0]:>16}{'max diff':>10}" for d in devices[1:]))
    for arch in args.archs.split(","):
        size = 84 if arch == "baseline" else 42
        frames, masks = pong_frames(size, args.frames)
        cpu_agent = make_agent(arch, obs_shape=(4, size, size), num_actions=6, seed=0, scale_frames=True,
                               init="orthogonal").eval()
        for name in MEASURED:
            rates, results = [], []
            for device in devices:
                agent = cpu_agent.to(device)
                rate, result = timed(name, agent, steps_on(agent, frames, device), masks, device)
                rates.append(rate)
                results.append(result)
            cpu_agent.to("cpu")
            scale = max(float(np.nanmax(np.abs(results[0]))), 1e-12)
            compared = "".join(f"{rate / rates[0]:>15.1f}x{np.nanmax(np.abs(result - results[0])) / scale:>10.1e}"
                               for rate, result in zip(rates[1:], results[1:], strict=True))
            print(f"{arch:<22}{name:<14}" + "".join(f"{rate:>14.1f}" for rate in rates) + compared, flush=True)


if __name__ == "__main__":
    main()
