"""Time per stage of `interp analyse` on a run of 10 checkpoints and a 150-frame evaluation set.

    .venv/bin/python benchmarks/analyse_run.py [--run RUN_DIR] [--checkpoints 10] [--arch timesformer_divided]
        [--frames 150] [--stages maps,atom,...] [--quickstart-agent]

Without ``--run`` it writes a run of ``--checkpoints`` checkpoints of a small agent (TimeSformer divided with
convolutional patches on 84x84 frames, or with ``--quickstart-agent`` the quick start's TimeSformer on 42x42 frames;
freshly initialised with seeds 0..9, so every checkpoint differs) under a temporary folder and analyses that;
with ``--run`` it analyses a copy of ``--checkpoints`` of an existing run's checkpoints, evenly spaced from the
first to the last (all of them without ``--checkpoints``). Every stage starts from an empty cache. Prints
the seconds of each stage (evaluation set, maps, ATOM, agreement, sanity) and the total.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
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
    parser.add_argument("--checkpoints", type=int, help="default: 10, or all of --run's")
    parser.add_argument("--stages", help="comma-separated stages (default: every stage that applies)")
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
            chosen = source.steps
            if args.checkpoints:
                chosen = [chosen[round(i)] for i in np.linspace(0, len(chosen) - 1, args.checkpoints)]
            copy.checkpoints_folder.mkdir(parents=True, exist_ok=True)
            for step in chosen:
                shutil.copy(source.checkpoint(step), copy.checkpoints_folder)
            label = f"{args.run}, {len(chosen)} checkpoints"
        else:
            arch, frame_size = args.arch, 84
            options = {"patch_embedding": "conv"} if arch.startswith("timesformer") else {}
            if args.quickstart_agent:
                spec = QUICKSTART_AGENTS[-1]
                arch, frame_size, options = spec.arch, spec.frame_size, spec.agent
            fresh = Run.new(TrainConfig(arch=arch, env="MiniPong-v0", frame_size=frame_size, agent=options,
                                        out=str(run)))
            fresh.write_config()
            for index in range(args.checkpoints or 10):
                torch.manual_seed(index)
                agent = make_agent(arch, obs_shape=(4, frame_size, frame_size), num_actions=3, **options)
                save_checkpoint(fresh.checkpoint_path(index * 1000), agent, env="MiniPong-v0", step=index * 1000)
            label = f"{arch} (fresh, {frame_size}x{frame_size} frames), {args.checkpoints or 10} checkpoints"
        start = time.perf_counter()
        stages = tuple(args.stages.split(",")) if args.stages else None
        seconds = analyse_run(run, frames=args.frames, workers=args.workers, stages=stages, log=lambda line: None)
        total = time.perf_counter() - start
    print(f"interp analyse: {label}, {args.frames} frames, {args.workers} workers")
    for stage, value in seconds.items():
        print(f"  {stage:<14}{value:8.1f} s")
    print(f"  {'total':<14}{total:8.1f} s")


if __name__ == "__main__":
    main()
