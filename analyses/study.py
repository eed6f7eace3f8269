"""``interp study``: a grid of agents and seeds, each trained and analysed as ``interp train`` and ``interp analyse``
do, compared with confidence intervals across seeds.

The study folder ``DIR``:

    DIR/study.json                  the command's settings (the grid, the shared and per-architecture training flags)
    DIR/runs/<arch>-s<seed>/        one run each, with its analysis/
    DIR/study.csv                   one row per run (:data:`COLUMNS`)
    DIR/summary.csv                 per architecture: the mean and a 95% confidence interval of each figure
    DIR/figures/*.png, report.html  the comparison (:mod:`analyses.study_report`)

Running the same command again continues: a finished run is reused (its trainer has nothing left to do, its analyses
are cached), an interrupted one resumes, and a grid grown by an architecture or a seed trains only the new runs.
With ``backend="ray"`` each run is a Ray task with ``cpus_per_run`` CPUs (and ``gpus_per_run`` GPUs) of its own,
its trainer's actors and its analysis workers inside them; the run directories must be on a file system every node
sees.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from analyses import STAGES
from analyses.analyse import analyse_run
from analyses.evaluation import EvaluationOptions
from analyses.findings import Finding, learning, threshold_for
from analyses.stage import write_table
from interp.agents import load_agent
from interp.agents.stepper import step_inputs
from interp.cluster import connect, disconnect, import_ray
from interp.errors import UserError
from interp.files import atomic_path
from interp.runs import Run
from trainers.config import LIGHT_INFERENCE, TrainConfig, configure
from trainers.impala import Trainer

COLUMNS = ["arch", "seed", "params", "steps", "hours", "steps_per_s", "inference_ms", "greedy_return",
           "sampled_return", "random_return", "auc", "first_step_at", "threshold"]
"""study.csv: per run its parameters, the steps trained, hours and steps per second of training, one agent step's
inference (batch 1) in milliseconds, the final checkpoint's mean returns over whole episodes (greedy, sampled, and a
uniformly random policy), the mean training return over the run (the thesis's "AUC"), and the first step at which the
mean of the last 100 training returns reached ``threshold`` (empty if it never did)"""
FIGURES = COLUMNS[2:-1]


@dataclass(frozen=True)
class StudyOptions:
    """A grid of runs and how each is analysed."""

    archs: tuple[str, ...] = ()
    """comma-separated architectures compared"""
    seeds: int = 3
    """seeds per architecture: first-seed, first-seed + 1, ..."""
    first_seed: int = 0
    """the first seed"""
    train: dict = field(default_factory=dict, metadata={"cli": False})
    """``interp train``'s settings for every run (field -> value), e.g. ``{"env": "MiniPong-v0", "steps": 500000}``"""
    per_arch: dict = field(default_factory=dict, metadata={"cli": False})
    """architecture -> settings of its runs that differ from ``train``'s"""
    threshold: float | None = None
    """the training return whose first step is reported; none: 18 on ALE Pong, 0 on MiniPong-v0 and TwoBall"""
    episodes: int = 20
    """whole episodes of the final checkpoint per policy"""
    frames: int = 150
    """frames of each run's evaluation set"""
    stages: tuple[str, ...] = ()
    """comma-separated analysis stages (default: every one that applies, as interp analyse)"""
    analysis_device: str = "auto"
    """where the analyses compute: auto (a GPU when torch sees one), cpu, cuda or cuda:N"""
    existing_only: bool = False
    """train and analyse nothing: the tables and report of the grid's runs already there (a grid still in progress,
    or runs trained with interp train into DIR/runs/<arch>-s<seed>/)"""

    def __post_init__(self) -> None:
        from interp.agents import AGENTS

        unknown = sorted(set(self.archs) - set(AGENTS)) + sorted(set(self.per_arch) - set(self.archs))
        if not self.archs or unknown:
            raise UserError(f"a study needs architectures of {', '.join(AGENTS)}; unknown or not in --archs: "
                            f"{', '.join(unknown) or 'none given'}")
        if self.seeds < 1 or self.first_seed < 0 or self.episodes < 1 or self.frames < 1:
            raise UserError(f"seeds, episodes and frames must be >= 1 and the first seed >= 0, got {self.seeds}, "
                            f"{self.episodes}, {self.frames}, {self.first_seed}")
        if sorted(set(self.stages) - set(STAGES)):
            raise UserError(f"unknown analysis stage(s) {sorted(set(self.stages) - set(STAGES))}; known: "
                            f"{', '.join(STAGES)}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise UserError(f"the threshold must be a finite return, got {self.threshold}")

    @property
    def env(self) -> str:
        return configure(self.archs[0], "", self.train).env

    def threshold_for(self) -> float | None:
        return self.threshold if self.threshold is not None else threshold_for(self.env)

    def grid(self, out: Path) -> list[TrainConfig]:
        """Every run's configuration, architecture by architecture, seed by seed."""
        return [configure(arch, str(out / "runs" / f"{arch}-s{seed}"),
                          {**self.train, **self.per_arch.get(arch, {}), "seed": seed})
                for arch in self.archs for seed in range(self.first_seed, self.first_seed + self.seeds)]


# ---- one run ----


@dataclass(frozen=True)
class RunJob:
    """One run of the grid: train (or resume, or find it finished), analyse, and return its row of study.csv."""

    config: TrainConfig
    options: StudyOptions
    workers: int | None = None
    """analysis worker processes (default: one per core)"""
    progress: bool = True

    def __call__(self) -> dict:
        run_dir = Path(self.config.out)
        trainer = Trainer(self.config, resume=Run.started(run_dir), progress=self.progress)
        trainer.run()
        if trainer.stop_requested:  # Ctrl-C or SIGTERM: the trainer wrote its checkpoint; the study stops
            raise KeyboardInterrupt
        options = {"evaluation": EvaluationOptions(episodes=self.options.episodes)}
        run = Run.open(run_dir)
        stages = tuple(name for name in self.options.stages if not STAGES[name].applies(run.agent)) or None
        analyse_run(run, stages=stages, options=options, frames=self.options.frames,
                    workers=self.workers, device=self.options.analysis_device, progress=self.progress,
                    log=lambda line: None)
        return run_row(run, self.options.threshold_for())


def run_row(run: Run, threshold: float | None) -> dict:
    """The run's row of study.csv (:data:`COLUMNS`)."""
    metrics = run.read_table("metrics.csv", ("step", "wall_time", "episodes_ended", "mean_return"))
    evaluation = run.read_table("evaluation.csv", ("policy", "mean_return"))
    returns = evaluation.set_index("policy")["mean_return"] if evaluation is not None else {}
    agent = load_agent(run.checkpoint(run.final))
    seconds = float(metrics.wall_time.iloc[-1])
    return {"arch": run.architecture, "seed": run.config.get("seed", 0),
            "params": sum(p.numel() for p in agent.parameters()),
            "steps": run.final, "hours": seconds / 3600, "steps_per_s": run.final / max(seconds, 1e-9),
            "inference_ms": inference_ms(agent), **{f"{policy}_return": returns.get(policy, np.nan)
                                                    for policy in ("greedy", "sampled", "random")},
            "auc": float(metrics.mean_return.mean()), "first_step_at": first_step_at(metrics, threshold),
            "threshold": threshold}


def first_step_at(metrics: pd.DataFrame, threshold: float | None) -> float:
    """The first step whose mean of the last 100 training returns (100 episodes ended) reaches ``threshold``."""
    if threshold is None:
        return np.nan
    full = metrics[(metrics.episodes_ended.cumsum() >= 100) & (metrics.mean_return >= threshold)]
    return float(full.step.iloc[0]) if len(full) else np.nan


@torch.no_grad()
def inference_ms(agent, repeats: int = 50) -> float:
    """One agent step (batch 1, float32, one torch thread, eval mode) in milliseconds: the median of ``repeats``."""
    agent.eval()
    inputs = step_inputs(torch.zeros(1, 1, *agent.obs_shape, dtype=torch.uint8))
    state = agent.initial_state(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent(inputs, state)  # warm-up
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            agent(inputs, state)
            timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(timings) * 1000)


# ---- the grid ----


def run_study(options: StudyOptions, out: str | Path, *, backend: str = "local", ray_address: str = "",
              cpus_per_run: int = 2, gpus_per_run: float = 0, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train and analyse every run of the grid into ``out`` (continuing what is there), then write study.csv,
    summary.csv, the figures and report.html. Returns study.csv's table."""
    from analyses.study_report import write_study_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "study.json") as tmp:
        tmp.write_text(json.dumps(asdict(options), indent=2, sort_keys=True))
    configs = options.grid(out)
    if options.existing_only:
        rows = [run_row(Run.open(config.out), options.threshold_for()) for config in configs
                if any(Run.new(config).checkpoints_folder.glob("step_*.pt"))]
        if not rows:
            raise UserError(f"{out / 'runs'} holds none of the grid's runs yet")
    elif backend == "ray":
        rows = _on_ray(configs, options, ray_address, cpus_per_run, gpus_per_run, log)
    else:
        rows = []
        for index, config in enumerate(configs, 1):
            log(f"[{index}/{len(configs)}] {Path(config.out).name}: {_where(config)}")
            rows.append(RunJob(config, options)())
            log(f"[{index}/{len(configs)}] {Path(config.out).name}: {_done(rows[-1])}")
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"greedy_return": float, "sampled_return": float,
                                                       "random_return": float})
    write_table(out / "study.csv", table)
    write_table(out / "summary.csv", summarise(table))
    write_study_report(out, options, table)
    return table


def _where(config: TrainConfig) -> str:
    try:
        run = Run.open(config.out)
    except UserError:
        return f"training to {config.steps:,} steps"
    if run.final >= config.steps:
        return f"trained ({run.final:,} steps); analysing"
    return f"resuming at {run.final:,} of {config.steps:,} steps"


def _done(row: dict) -> str:
    return (f"{row['steps']:,} steps in {row['hours'] * 60:.1f} min, greedy {row['greedy_return']:+.2f} "
            f"(random {row['random_return']:+.2f})")


def _on_ray(configs: list[TrainConfig], options: StudyOptions, address: str, cpus: int, gpus: float,
            log: Callable[[str], None]) -> list[dict]:
    """Each run a Ray task with ``cpus`` CPUs (its learner on half of them, its actors on the rest, as the local
    layout on a machine of that many cores) and ``gpus`` GPUs; returns the rows in the grid's order."""
    ray = import_ray()
    started = connect(address)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_ray_run)
    pending = {}
    try:
        for config in configs:
            laid_out = _layout(config, cpus, gpus, {**options.train, **options.per_arch.get(config.arch, {})})
            pending[task.remote(RunJob(laid_out, options, workers=cpus, progress=False))] = config
        rows = {}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            config = pending.pop(finished[0])
            try:
                row, node = ray.get(finished[0])
            except ray.exceptions.RayTaskError as error:  # the run's own error, e.g. a UserError
                raise error.cause from None
            rows[config.out] = row
            _record_node(Run.new(config), node)
            log(f"[{len(rows)}/{len(configs)}] {Path(config.out).name} on node {node[:8]}: {_done(row)}")
        return [rows[config.out] for config in configs]
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        disconnect(started)


def _layout(config: TrainConfig, cpus: int, gpus: float, given: dict) -> TrainConfig:
    """The run laid out on a task of ``cpus`` CPUs as :func:`trainers.config.default_actors` lays it out on a
    machine of that many cores, and its learner on the GPU where the task has one: the settings ``given`` on the
    command line are kept."""
    learner = max(1, cpus // 2)
    layout = {"learner_threads": learner, "device": "cuda" if gpus else config.device,
              "actors": cpus + 1 if config.arch in LIGHT_INFERENCE else max(1, cpus - learner)}
    return replace(config, **{k: v for k, v in layout.items() if k not in given})


def _ray_run(job: RunJob) -> tuple[dict, str]:
    import ray

    return job(), ray.get_runtime_context().get_node_id()


def _record_node(run: Run, node: str) -> None:
    with atomic_path(run.analysis / "node.txt") as tmp:
        tmp.write_text(node + "\n")


# ---- what the study found ----


def study_findings(out: Path) -> list[Finding]:
    """Per architecture: whether it learned in each seed (the final checkpoint's greedy episodes against the random
    policy's, :func:`analyses.findings.learning`), its greedy return with the interval across seeds, and when it
    first reached the threshold; then the ranking, and the caveats (a single seed)."""
    table = pd.read_csv(out / "study.csv")
    found = []
    for arch, everything in table.groupby("arch", sort=False):
        group = everything.dropna(subset=["greedy_return"])
        if len(group) < len(everything):  # runs still training, or trained but not yet evaluated
            found.append(_not_evaluated(arch, everything[everything.greedy_return.isna()]))
        if group.empty:
            continue
        verdicts = []
        for seed in group.seed:
            learned = [f for f in learning(Run.open(out / "runs" / f"{arch}-s{seed}"))
                       if "learned" in f.numbers]
            verdicts.append(bool(learned and learned[0].numbers["learned"]))
        greedy = group.greedy_return.to_numpy(float)
        low, high = t_interval(greedy)
        interval = f" [95% interval {low:+.2f}, {high:+.2f}]" if len(greedy) > 1 else ""
        reached = group.first_step_at.dropna()
        first = ("" if group.threshold.isna().all() else f"; reached {group.threshold.iloc[0]:g} in {len(reached)} "
                 f"of {len(group)}" + (f", at step {reached.median():,.0f} (median)" if len(reached) else ""))
        text = (f"{arch}: learned in {sum(verdicts)} of {len(verdicts)} seed(s) (greedy above random, Welch's "
                f"t-test, p < 0.05); greedy {greedy.mean():+.2f}{interval} against random "
                f"{group.random_return.mean():+.2f}{first}.")
        found.append(Finding("learning", text, "table", warning=sum(verdicts) * 2 < len(verdicts),
                             numbers={"arch": arch, "learned": sum(verdicts), "seeds": len(verdicts)}))
    means = table.groupby("arch", sort=False).greedy_return.mean().dropna().sort_values(ascending=False)
    if len(means):
        found.append(Finding("learning", "Ranked by mean greedy return: " + ", ".join(
            f"{arch} {value:+.2f}" for arch, value in means.items()) + ".", "learning"))
    if table.groupby("arch").size().min() < 2:
        found.append(Finding("caveat", "Some architectures have a single seed: no interval across seeds for them."))
    return found


def _not_evaluated(arch: str, runs: pd.DataFrame) -> Finding:
    seeds = ", ".join(f"seed {seed} at {steps:,.0f} steps" for seed, steps in zip(runs.seed, runs.steps, strict=True))
    return Finding("caveat", f"{arch}: {len(runs)} run(s) without an evaluation of the final checkpoint ({seeds}): "
                   "left out of its learning figures.", "table", warning=True)


# ---- statistics across seeds ----


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per architecture (in the grid's order) and figure: the seeds, the mean and a 95% confidence interval of the
    mean (Student's t with the seeds' standard deviation; a single seed has no interval). A run without an
    evaluation (still training) is left out, as from the learning figures: its steps, hours and AUC are of a part of
    the run; an architecture with none evaluated keeps its rows, with 0 seeds."""
    rows = []
    for arch, group in table.groupby("arch", sort=False):
        evaluated = group.dropna(subset=["greedy_return"])
        for figure in FIGURES:
            values = evaluated[figure].dropna().to_numpy(float)
            low, high = t_interval(values)
            rows.append({"arch": arch, "figure": figure, "seeds": len(values),
                         "mean": float(values.mean()) if len(values) else np.nan, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The ``confidence`` interval of the mean of ``values`` by Student's t (NaN for fewer than two values)."""
    if len(values) < 2:
        return np.nan, np.nan
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def iqm_with_ci(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
                ) -> tuple[float, float, float]:
    """The interquartile mean of ``values`` (runs) and its percentile-bootstrap ``confidence`` interval over runs:
    what rliable's ``aggregate_iqm`` and ``get_interval_estimates`` give for one game (rliable itself pins
    ``arch<8``, whose last release fails to import with pandas 3)."""
    values = np.asarray(values, dtype=float)
    iqm = float(stats.trim_mean(values, 0.25))
    if len(values) < 2 or np.all(values == values[0]):
        return iqm, iqm, iqm
    result = stats.bootstrap((values,), lambda sample, axis: stats.trim_mean(sample, 0.25, axis=axis),
                             confidence_level=confidence, n_resamples=resamples, method="percentile",
                             rng=np.random.default_rng(seed))
    return iqm, float(result.confidence_interval.low), float(result.confidence_interval.high)
