"""Training steps per second: this trainer's batched actors (local and Ray backends) against TorchBeast
MonoBeast's actor design.

    .venv/bin/python benchmarks/train_throughput.py [--archs baseline,adaptive] [--envs MiniPong-v0,ALE/Pong-v5]
                                                    [--seconds 60] [--designs batched,ray,monobeast]

For each architecture and environment, runs with the same network, learner and batch (16 rollouts of 20 steps) on
this machine, side by side:

- ``batched``: 2 actor processes each stepping 8 environments with one batched forward pass;
- ``ray``: the same 2 actors as Ray actors on a local Ray (``--backend ray``; needs the ``ray`` extra);
- ``monobeast``: MonoBeast's design, one actor process per environment (16) with batch-1 inference.

SPS is measured from ``metrics.csv`` after a warm-up: the run's start-up (until the first update) and the first
quarter of the updates' time are left out.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import threading
from pathlib import Path

from trainers.config import TrainConfig
from trainers.impala import Trainer

DESIGNS = {"batched": {"actors": 2, "envs_per_actor": 8},
           "ray": {"actors": 2, "envs_per_actor": 8, "backend": "ray"},
           "monobeast": {"actors": 16, "envs_per_actor": 1}}


def measure(arch: str, env: str, design: str, seconds: float, out: Path) -> float:
    config = TrainConfig(arch=arch, env=env, steps=10**9, out=str(out), batch_size=16, unroll=20,
                         checkpoint_every=10**9, **DESIGNS[design])
    return measure_config(config, seconds)


def measure_config(config: TrainConfig, seconds: float) -> float:
    """Steps per second of training ``config`` for ``seconds`` of wall time, after the warm-up."""
    trainer = Trainer(config, progress=False)
    timer = threading.Timer(seconds, lambda: setattr(trainer, "stop_requested", True))
    timer.start()
    try:
        trainer.run()
    finally:
        timer.cancel()
    with open(trainer.run_files.metrics_path) as file:
        rows = [(int(r["step"]), float(r["wall_time"])) for r in csv.DictReader(file)]
    if not rows:
        return float("nan")
    first, last = rows[0][1], rows[-1][1]
    warm = [r for r in rows if r[1] >= first + (last - first) / 4]
    if len(warm) < 2:
        return float("nan")
    (step0, time0), (step1, time1) = warm[0], warm[-1]
    return (step1 - step0) / (time1 - time0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,mott,adaptive,spatiotemporal_oneshot,timesformer_divided")
    parser.add_argument("--envs", default="MiniPong-v0,ALE/Pong-v5")
    parser.add_argument("--seconds", type=float, default=60.0, help="wall time per run")
    parser.add_argument("--designs", default=",".join(DESIGNS))
    args = parser.parse_args()
    designs = args.designs.split(",")
    print(f"{'architecture':<24} {'environment':<13}" + "".join(f" {d + ' SPS':>14}" for d in designs) +
          "".join(f" {d + '/monobeast':>18}" for d in designs if d != "monobeast" and "monobeast" in designs))
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for env in args.envs.split(","):
                sps = {design: measure(arch, env, design, args.seconds, Path(tmp) / f"{arch}_{design}_{env[-6:]}")
                       for design in designs}
                line = f"{arch:<24} {env:<13}" + "".join(f" {sps[d]:>14.0f}" for d in designs)
                if "monobeast" in designs:
                    line += "".join(f" {sps[d] / sps['monobeast']:>17.2f}x" for d in designs if d != "monobeast")
                print(line, flush=True)


if __name__ == "__main__":
    main()
