"""Training steps per second of every agent on ALE Pong at the same preset, side by side in one run: the thesis's
agents at 42x42 against the baseline at 84x84, each as a fraction of the baseline's (the bound: 0.5).

    .venv/bin/python benchmarks/agent_speed.py [--archs baseline,mott,...] [--rounds 4] [--window-seconds 20]

Every agent's ``interp train --env ALE/Pong-v5 --preset pong`` starts in a process group of its own, runs a warm-up
window (its actors' first rollouts, its learner's first updates) and is paused (SIGSTOP). Then, round by round,
each runs alone for a window while the others stay paused, so that all of them share this machine's drift. A
window's steps per second come from the ``metrics.csv`` rows it wrote, the first second after a resume left out;
an agent's figure is its windows' steps over their seconds. Run it on a quiet machine. To measure another tree
of this project (an older commit), run it with ``PYTHONPATH=TREE`` so that its trainers import every package from
that tree: changing directory is not enough, since the editable install imports ``interp`` at start-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from train_bound import PausedTrainer, window_sps

from interp.agents import AGENTS
from trainers.config import TrainConfig

BOUND = 0.5
FRAME_SIZES = {"baseline": 84}  # the others at 42x42, the thesis's setting for its attention agents


def start(arch: str, out: Path, window_seconds: float) -> PausedTrainer:
    config = TrainConfig(arch=arch, env="ALE/Pong-v5", steps=10**9, out=str(out), checkpoint_every=10**9)
    trainer = PausedTrainer(config, ("--preset", "pong", "--frame-size", str(FRAME_SIZES.get(arch, 42))))
    trainer.wait_for_first_update()
    trainer.run_for(window_seconds)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(a for a in AGENTS if a != "atarinet"),
                        help="the first is the reference (default: the baseline and the thesis's six)")
    parser.add_argument("--rounds", type=int, default=4, help="windows per agent")
    parser.add_argument("--window-seconds", type=float, default=20.0)
    args = parser.parse_args()
    archs = args.archs.split(",")
    totals = {arch: [0, 0.0] for arch in archs}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        try:
            for arch in archs:
                trainers[arch] = start(arch, Path(tmp) / arch, args.window_seconds)
            for _ in range(args.rounds):
                for arch, trainer in trainers.items():
                    steps, seconds = window_sps(trainer.run_for(args.window_seconds))
                    totals[arch][0] += steps
                    totals[arch][1] += seconds
        finally:
            for trainer in trainers.values():
                trainer.stop()
    sps = {arch: steps / seconds for arch, (steps, seconds) in totals.items()}
    reference = archs[0]
    print(f"ALE/Pong-v5 --preset pong, {args.rounds} alternating windows of {args.window_seconds:g} s per agent")
    print(f"{'agent':<24} {'frames':>6} {'steps/s':>8} {'of ' + reference:>12} {'bound':>6}")
    for arch in archs:
        ratio = sps[arch] / sps[reference]
        mark = "" if arch == reference else ("  ok" if ratio >= BOUND else "  below")
        print(f"{arch:<24} {FRAME_SIZES.get(arch, 42):>6} {sps[arch]:>8.0f} {ratio:>12.2f} {BOUND:>6}{mark}")


if __name__ == "__main__":
    main()
