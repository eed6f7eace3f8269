"""Training steps per second of the quick start's two agents under different layouts of processes and threads on
this machine, side by side (``interp quickstart`` uses the fastest layout per agent).

    .venv/bin/python benchmarks/train_layout.py [--seconds 90] [--repeats 1]

Layouts, each with the same batch (16 rollouts of 20 steps) and each in a fresh process, so that libgomp's spin
count (``GOMP_SPINCOUNT``, read when torch loads) can differ:

- ``2x8 spin``: the trainer's defaults, 2 actor processes of 8 environments, the learner on torch's default threads
  (one per core), OpenMP threads spinning a while before they sleep when they wait (libgomp's default);
- ``1x16 1t``: one actor process of 16 environments and one learner thread;
- ``1x16 spin`` / ``1x16 short spin``: one actor of 16 environments, the learner on the default threads, its
  waiting threads spinning 300,000 (libgomp's default) or 20,000 times (``GOMP_SPINCOUNT=20000``, which
  ``interp train`` and ``interp quickstart`` set) before they sleep.

Spinning learner threads take the cores the actors need; with one thread per core and one actor, a core is
oversubscribed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

LAYOUTS = {"2x8 spin": ({"actors": 2, "envs_per_actor": 8}, None),
           "1x16 1t": ({"actors": 1, "envs_per_actor": 16, "learner_threads": 1}, None),
           "1x16 spin": ({"actors": 1, "envs_per_actor": 16}, None),
           "1x16 short spin": ({"actors": 1, "envs_per_actor": 16}, "20000")}


def measure_one(arch: str, layout: str, out: str, seconds: float) -> float:
    """In this process: the quick start's settings for ``arch`` under ``layout``."""
    from train_throughput import measure_config

    from analyses.quickstart import AGENTS, ENV
    from trainers.config import TrainConfig

    spec = next(spec for spec in AGENTS if spec.arch == arch)
    config = TrainConfig(arch=arch, env=ENV, steps=10**9, out=out, frame_size=spec.frame_size, lr=spec.lr,
                         agent=spec.agent, checkpoint_every=10**9)
    return measure_config(replace(config, **LAYOUTS[layout][0]), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90.0, help="wall time per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per layout (alternated); the median is shown")
    parser.add_argument("--one", nargs=3, metavar=("ARCH", "LAYOUT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(measure_one(*args.one, args.seconds))
        return
    from analyses.quickstart import AGENTS

    layouts = list(LAYOUTS)
    print(f"{'agent':<22}" + "".join(f" {layout + ' SPS':>17}" for layout in layouts) +
          "".join(f" {layout + '/2x8 spin':>22}" for layout in layouts[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        for spec in AGENTS:
            runs: dict[str, list[float]] = {layout: [] for layout in layouts}
            for repeat in range(args.repeats):
                for layout in layouts:
                    env = {key: value for key, value in os.environ.items() if key != "GOMP_SPINCOUNT"}
                    if LAYOUTS[layout][1]:
                        env["GOMP_SPINCOUNT"] = LAYOUTS[layout][1]
                    out = Path(tmp) / f"{spec.arch}_{layout.replace(' ', '_')}_{repeat}"
                    result = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--one",
                                             spec.arch, layout, str(out)], env=env, check=True, capture_output=True,
                                            text=True)
                    runs[layout].append(float(result.stdout.split()[-1]))
            sps = {layout: sorted(values)[len(values) // 2] for layout, values in runs.items()}
            print(f"{spec.arch:<22}" + "".join(f" {sps[layout]:>17.0f}" for layout in layouts) +
                  "".join(f" {sps[layout] / sps['2x8 spin']:>21.2f}x" for layout in layouts[1:]), flush=True)


if __name__ == "__main__":
    main()
