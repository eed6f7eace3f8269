"""Time per stage of `interp analyse` on a run of 10 checkpoints and a 150-frame evaluation set.

    .venv/bin/python benchmarks/analyse_run.py [--run RUN_DIR] [--arch timesformer_divided] [--frames 150]
        [--quickstart-agent]

Without ``--run`` it writes a run of ``--checkpoints`` checkpoints of a small agent (TimeSformer divided with
convolutional patches on 84x84 frames, or with ``--quickstart-agent`` the quick start's TimeSformer on 42x42 frames;
freshly initialised with seeds 0..9, so every checkpoint differs) under a temporary folder and analyses that;
with ``--run`` it analyses a copy of an existing run's checkpoints. Every stage starts from an empty cache. Prints
the seconds of each stage (evaluation set, maps, ATOM, agreement, sanity) and the total.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from analyses.analyse import analyse_run
from analyses.quickstart import AGENTS as QUICKSTART_AGENTS
from interp.agents import make_agent, save_checkpoint
from interp.runs import Run
from trainers.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="an existing run directory (its checkpoints are copied)")
    parser.add_argument("--arch", default="timesformer_divided")
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quickstart-agent", action="store_true",
                        help="the quick start's TimeSformer (42x42 frames, 7x7 patches, width 32)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        if args.run:
            source = Run.open(args.run)
            copy = Run(run, {}, source.environment, config=source.config)
            copy.write_config()
            shutil.copytree(source.checkpoints_folder, copy.checkpoints_folder, dirs_exist_ok=True)
            label = args.run
        else:
            arch, frame_size = args.arch, 84
            options = {"patch_embedding": "conv"} if arch.startswith("timesformer") else {}
            if args.quickstart_agent:
                spec = QUICKSTART_AGENTS[-1]
                arch, frame_size, options = spec.arch, spec.frame_size, spec.agent
            fresh = Run.new(TrainConfig(arch=arch, env="MiniPong-v0", frame_size=frame_size, agent=options,
                                        out=str(run)))
            fresh.write_config()
            for index in range(args.checkpoints):
                torch.manual_seed(index)
                agent = make_agent(arch, obs_shape=(4, frame_size, frame_size), num_actions=3, **options)
                save_checkpoint(fresh.checkpoint_path(index * 1000), agent, env="MiniPong-v0", step=index * 1000)
            label = f"{arch} (fresh, {frame_size}x{frame_size} frames), {args.checkpoints} checkpoints"
        start = time.perf_counter()
        seconds = analyse_run(run, frames=args.frames, workers=args.workers, log=lambda line: None)
        total = time.perf_counter() - start
    print(f"interp analyse: {label}, {args.frames} frames, {args.workers} workers")
    for stage, value in seconds.items():
        print(f"  {stage:<14}{value:8.1f} s")
    print(f"  {'total':<14}{total:8.1f} s")


if __name__ == "__main__":
    main()
