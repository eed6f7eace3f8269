"""Training steps per second: this trainer's batched actors against TorchBeast MonoBeast's actor design.

    .venv/bin/python benchmarks/train_throughput.py [--archs baseline,adaptive] [--envs MiniPong-v0,ALE/Pong-v5]
                                                    [--seconds 60]

For each architecture and environment, two runs with the same network, learner and batch (16 rollouts of 20
steps) on this machine, side by side:

- ``batched``: the defaults, 2 actor processes each stepping 8 environments with one batched forward pass;
- ``monobeast``: MonoBeast's design, one actor process per environment (16) with batch-1 inference.

SPS is measured from ``metrics.csv`` after a warm-up (the first quarter of the run is left out).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import threading
from pathlib import Path

from trainers.config import TrainConfig
from trainers.impala import Trainer

DESIGNS = {"batched": {"actors": 2, "envs_per_actor": 8}, "monobeast": {"actors": 16, "envs_per_actor": 1}}


def measure(arch: str, env: str, design: str, seconds: float, out: Path) -> float:
    config = TrainConfig(arch=arch, env=env, steps=10**9, out=str(out), batch_size=16, unroll=20,
                         checkpoint_every=10**9, **DESIGNS[design])
    trainer = Trainer(config, progress=False)
    timer = threading.Timer(seconds, lambda: setattr(trainer, "stop_requested", True))
    timer.start()
    try:
        trainer.run()
    finally:
        timer.cancel()
    with open(out / "metrics.csv") as file:
        rows = [(int(r["step"]), float(r["wall_time"])) for r in csv.DictReader(file)]
    warm = [r for r in rows if r[1] >= seconds / 4]
    if len(warm) < 2:
        return float("nan")
    (step0, time0), (step1, time1) = warm[0], warm[-1]
    return (step1 - step0) / (time1 - time0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,mott,adaptive,spatiotemporal_oneshot,timesformer_divided")
    parser.add_argument("--envs", default="MiniPong-v0,ALE/Pong-v5")
    parser.add_argument("--seconds", type=float, default=60.0, help="wall time per run")
    args = parser.parse_args()
    print(f"{'architecture':<24} {'environment':<13} {'batched SPS':>12} {'monobeast SPS':>14} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for env in args.envs.split(","):
                sps = {design: measure(arch, env, design, args.seconds, Path(tmp) / f"{arch}_{design}_{env[-6:]}")
                       for design in DESIGNS}
                print(f"{arch:<24} {env:<13} {sps['batched']:>12.0f} {sps['monobeast']:>14.0f} "
                      f"{sps['batched'] / sps['monobeast']:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
