"""Two settings of ``interp train`` side by side, in alternating windows of two paused trainers.

    .venv/bin/python benchmarks/train_ab.py --a="--actors 1" --b="--actors 3" [--arch adaptive] [--precision bf16]
                                            [--env ALE/Pong-v5] [--windows 8] [--window-seconds 15]

Both trainers start (``--a`` and ``--b`` are flags added to each one's command line) and are paused
(:class:`train_bound.PausedTrainer`); then they take turns, one running for a window while the other is paused, in
the order A B, B A, A B, ... so that the machine's drift falls on both alike. A window's steps per second come from
its own rows of ``metrics.csv``, the first second after a resume left out. Prints each pair of windows and their
ratio, then the mean ratio A / B with its standard error. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

import numpy as np
from train_bound import PausedTrainer, window_sps

from trainers.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", default="", help="flags of trainer A (default: none, the defaults)")
    parser.add_argument("--b", required=True, help="flags of trainer B")
    parser.add_argument("--arch", default="baseline")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--windows", type=int, default=8, help="windows of each trainer")
    parser.add_argument("--window-seconds", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = []
        try:
            for name, flags in (("a", args.a), ("b", args.b)):
                config = TrainConfig(arch=args.arch, env=args.env, precision=args.precision, steps=10**9,
                                     checkpoint_every=10**9, out=str(Path(tmp) / name))
                trainers.append(PausedTrainer(config, tuple(shlex.split(flags))))
                trainers[-1].wait_for_first_update()
                trainers[-1].pause()
            for trainer in trainers:
                trainer.run_for(args.window_seconds)  # warm-up
            sps: list[list[float]] = [[], []]
            for window in range(args.windows):
                for index in (0, 1) if window % 2 == 0 else (1, 0):
                    steps, seconds = window_sps(trainers[index].run_for(args.window_seconds))
                    sps[index].append(steps / seconds)
                print(f"window {window}: A {sps[0][-1]:.0f}, B {sps[1][-1]:.0f} steps/s, A / B "
                      f"{sps[0][-1] / sps[1][-1]:.3f}", flush=True)
        finally:
            for trainer in trainers:
                trainer.stop()
    ratios = np.array(sps[0]) / np.array(sps[1])
    print(f"A ({args.a or 'the defaults'}) {np.mean(sps[0]):.0f} steps/s, B ({args.b}) {np.mean(sps[1]):.0f}: "
          f"A / B {ratios.mean():.3f} +- {ratios.std(ddof=1) / np.sqrt(len(ratios)):.3f} (standard error)")


if __name__ == "__main__":
    main()
