"""Steps and wall time for each architecture to learn MiniPong-v0 on this CPU.

    .venv/bin/python benchmarks/learning.py [--archs baseline,adaptive,timesformer_divided] [--max-steps 2000000]
                                            [--out runs/learning]

Each architecture trains with the default settings (2 actors x 8 environments, batch 16, unroll 20) until the mean
return of the last 100 episodes reaches 80% of the maximum (4 of 5 points) or ``--max-steps``. Runs are kept in
``--out`` (one run directory each, with checkpoints across training) and a table is printed at the end.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from interp.envs import make_env
from interp.runs import Run
from trainers.config import TrainConfig
from trainers.impala import Trainer


def learn(arch: str, max_steps: int, out: Path, target: float, seed: int) -> dict:
    config = TrainConfig(arch=arch, env="MiniPong-v0", steps=max_steps, out=str(out), seed=seed,
                         checkpoint_every=max(max_steps // 10, 1))
    trainer = Trainer(config, resume=Run.new(config).state_path.exists(), progress=True)
    reached: dict = {}

    def watch() -> None:
        while not trainer.stop_requested and trainer.step < max_steps:
            if len(trainer.returns) >= 100 and sum(trainer.returns) / len(trainer.returns) >= target:
                reached.update(step=trainer.step, wall_time=trainer.elapsed)
                trainer.stop_requested = True
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    trainer.run()
    final = sum(trainer.returns) / len(trainer.returns) if trainer.returns else float("nan")
    return {"arch": arch, "reached": bool(reached), "steps": reached.get("step", trainer.step),
            "wall_time": reached.get("wall_time", trainer.elapsed), "final_mean_return": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,mott,adaptive,spatiotemporal,spatiotemporal_oneshot,"
                                           "timesformer_divided,timesformer_joint")
    parser.add_argument("--max-steps", type=int, default=2_000_000)
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    points = make_env("MiniPong-v0").unwrapped.config.points
    target = 0.8 * points
    results = [learn(arch, args.max_steps, Path(args.out) / arch, target, args.seed) for arch in args.archs.split(",")]
    print(f"\nMiniPong-v0, target mean return {target:g} of {points} (last 100 episodes)")
    print(f"{'architecture':<24} {'reached':>8} {'steps':>10} {'wall time':>10} {'mean return':>12}")
    for r in results:
        print(f"{r['arch']:<24} {'yes' if r['reached'] else 'no':>8} {r['steps']:>10,} "
              f"{r['wall_time'] / 60:>8.1f}min {r['final_mean_return']:>12.2f}")


if __name__ == "__main__":
    main()
