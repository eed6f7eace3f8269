"""The whole mission on the built-in default, in one call: train, analyse, render, report.

Two agents learn MiniPong-v0: the feed-forward baseline on 84x84 frames and a TimeSformer agent with divided
space-time attention over the 6x6 grid of a narrow IMPALA ResNet (8, 16, 16 channels; the thesis' hybrid patch
embedding) on 42x42 frames. The small frame and the narrow ResNet keep it within minutes on two CPU cores; with
single-convolution patches instead, it did not learn in this budget. Each run keeps checkpoints across training;
each gets an evaluation set played by its own final checkpoint, analysed by every checkpoint of the run (ATOM with
its saliency profiles, attention maps, perturbation, gradient and LRP saliency, agreement with chance levels,
sanity checks), and an overlay video; one page compares them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from analyses.analyse import analyse_run
from analyses.evaluation import EvaluationOptions
from analyses.report import write_report
from analyses.video import VideoOptions
from interp.errors import UserError
from interp.runs import Run
from trainers.config import configure
from trainers.impala import train

ENV = "MiniPong-v0"
# one actor process of 16 environments beside the learner: on two cores, two actors and a learner on two threads
# oversubscribe the cores (benchmarks/train_layout.py; README, "Training on few cores")
LAYOUT = {"actors": 1, "envs_per_actor": 16}
# 0, 10k, 20k, 50k, then every 100k: the steps below 10k (little changes there) would double the analyses' time
CHECKPOINTS = {"checkpoint_every": 100_000, "first_checkpoint": 10_000}


@dataclass(frozen=True)
class QuickstartAgent:
    """One of the quick start's agents: what it trains, beyond MiniPong's defaults (trainers.config.configure)."""

    arch: str
    """architecture name from ``interp.agents.AGENTS``"""
    steps: int
    """environment steps to train for"""
    agent: dict = field(default_factory=dict)
    """architecture options (``interp train --agent-option``)"""
    lr: float = 6e-4
    """learning rate (``TrainConfig.lr``)"""
    lr_schedule: str = "constant"
    """``constant`` or ``linear`` (``TrainConfig.lr_schedule``)"""
    lr_warmup: int = 0
    """steps over which the learning rate first rises to its schedule's (``TrainConfig.lr_warmup``)"""
    frame_size: int = 84
    """observation side, 84 or 42"""
    unroll: int = 10
    """rollout length T (``TrainConfig.unroll``; the trainer's default is 20)"""


# Both agents train at an unroll of 10, twice the updates per frame of the default 20: their learning began earlier
# and within the budget. At 20 the baseline (200k steps) reached 3.0 above random in 5 of 10 seeds in bf16 and 6 of
# 10 in float32, the TimeSformer (320k) in 9 of 10; at 10 the baseline in 10 of 10, the TimeSformer in 9 of 10 in
# 200k steps, and in 10 of 10 with a warm-up of 20k steps: torch's RMSprop's first update otherwise left its policy
# all but deterministic (README, "Quick start figures"). The TimeSformer learns at twice the trainer's default
# learning rate, falling linearly to 0 as IMPALA anneals it (at a constant rate its final policy still swung: seed
# 8's played -4.4 against a training return of -0.74). The baseline keeps a constant 6e-4 (annealed from 1.2e-3, seed
# 0 did not learn) and no warm-up (its entropy swings back at the next update; with a warm-up its margins were lower
# in the 4 seeds tried, one under 3.0). Both learners take the trainer's default threads (half the cores: one on two,
# the other core left to the actor): in float32 here the baseline trained 1.2x faster than with a thread per core.
AGENTS = (
    QuickstartAgent("baseline", steps=200_000),
    QuickstartAgent("timesformer_divided", steps=200_000, lr=1.2e-3, lr_schedule="linear", lr_warmup=20_000,
                    frame_size=42,
                    agent={"patch_embedding": "resnet", "resnet_channels": [8, 16, 16], "mem_len": 4,
                           "embed_dim": 32}),
)


def _last_step(run: Path) -> int:
    try:
        return Run.open(run).final
    except UserError:  # not started yet
        return -1


def train_agent(spec: QuickstartAgent, out: Path, *, seed: int = 0, progress: bool = True, log=print) -> Path:
    """Train (or resume, or find finished) one quick-start agent in ``out/<arch>``; returns the run directory."""
    run = out / spec.arch
    settings = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name != "arch"}  # TrainConfig's names
    given = {"env": ENV, "seed": seed, **settings, **LAYOUT, **CHECKPOINTS}
    if _last_step(run) < spec.steps:
        log(f"training {spec.arch} on {ENV} for {spec.steps:,} steps")
        train(configure(spec.arch, str(run), given), resume=Run.started(run), progress=progress)
        if _last_step(run) < spec.steps:  # the trainer stopped early on SIGINT/SIGTERM, with a checkpoint
            raise KeyboardInterrupt
    return run


def quickstart(out: str | Path = "runs/quickstart", *, agents: tuple[QuickstartAgent, ...] = AGENTS,
               frames: int = 25, video_frames: int = 100, episodes: int = 10, seed: int = 0, log=print) -> Path:
    """Train, analyse, render and report into ``out``; returns the report's path. Finished stages are reused when
    called again on the same folder (training resumes, analyses are cached)."""
    out = Path(out)
    start = time.perf_counter()
    runs = [Run.open(train_agent(spec, out, seed=seed, log=log)) for spec in agents]
    options = {"evaluation": EvaluationOptions(episodes=episodes, seed=seed),
               "video": VideoOptions(frames=video_frames, seed=seed)}
    for run in runs:
        log(f"analysing {run.name}")
        analyse_run(run, frames=frames, seed=seed, options=options, log=lambda line: None)
        returns = run.read_table("evaluation.csv").set_index("policy").mean_return
        log(f"{run.name}: final checkpoint's mean return " + ", ".join(f"{p} {v:.2f}" for p, v in returns.items()))
    report = write_report(runs, out / "report.html")
    log(f"done in {(time.perf_counter() - start) / 60:.1f} min")
    return report
