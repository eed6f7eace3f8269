"""The compute bound of training on this machine, and the trainer's measured speed as a fraction of it.

    .venv/bin/python benchmarks/train_bound.py [--archs baseline,mott,adaptive,timesformer_divided]
                                               [--precisions fp32,bf16] [--env ALE/Pong-v5] [--windows 6]
                                               [--window-seconds 10]

Every agent step costs the same three pieces of work, whatever the trainer: the environment's step, the actor's
share of a batched forward pass (16 environments), and the learner's share of a forward and backward pass over a
batch (16 rollouts of 20 steps) with the optimizer's step. Each is timed here on one core (one torch thread, one
environment thread; the median of five timings), so no trainer of this network on ``C`` cores can exceed
``C / (env + actor + learner)`` steps per second at the machine's typical speed: the bound.

Then ``interp train`` runs with its defaults, in windows: after a warm-up, the trainer runs for a window, is
paused (SIGSTOP to its processes), the three costs are timed again while it is paused, and it resumes (SIGCONT).
Each window's steps per second (from ``metrics.csv``, rows of that window only, the first second after a resume
left out) is divided by the bound of the costs timed right before and right after it. A shared virtual machine's
speed drifts by tens of percent within minutes; timed in the same minute as the trainer ran, the bound drifts with
it. The row gives the costs' means, the bound's range over the timings, the trainer's steps per second over all
windows, and the mean (and range) of the windows' fractions of their bound. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from interp import precision
from interp.agents import make_agent
from interp.envs import make_vector_env
from interp.memory import reuse_freed_memory
from interp.runs import Run
from trainers.config import TrainConfig
from trainers.impala import learner_losses
from trainers.optim import RMSpropTF

ENVS, UNROLL = 16, 20


def typical_seconds(work, repeats: int = 5) -> float:
    """The median of ``repeats`` timings of ``work()`` after one warm-up call. Not the fastest: this machine's
    speed changes within seconds, and the trainer's steps per second are an average over its run, so the bound is
    taken at the machine's typical speed too (the fastest of the timings made the baseline's bf16 actor and learner
    costs up to 1.4x and 1.2x lower than their medians)."""
    work()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))


def environment_ms(env_id: str, steps: int = 50) -> float:
    """Milliseconds per agent step of the vector environment on one thread."""
    envs = make_vector_env(env_id, ENVS, seed=0, num_threads=1)
    actions = np.zeros(ENVS, dtype=np.int64)

    def run():
        for _ in range(steps):
            envs.step(actions)

    seconds = typical_seconds(run)
    envs.close()
    return 1000 * seconds / (steps * ENVS)


def step_inputs(steps: int, obs_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"frame": torch.randint(0, 256, (steps, ENVS, *obs_shape), dtype=torch.uint8, generator=generator),
            "reward": torch.zeros(steps, ENVS), "done": torch.zeros(steps, ENVS, dtype=torch.bool),
            "last_action": torch.zeros(steps, ENVS, dtype=torch.int64)}


def actor_ms(agent, chosen: str) -> float:
    """Milliseconds per agent step of the actor's batched forward pass (sampling, no gradient)."""
    inputs, state = step_inputs(1, agent.obs_shape), agent.initial_state(ENVS)
    agent.train()

    def run():
        with torch.no_grad(), precision.autocast(chosen, "cpu"):
            for _ in range(10):
                agent(inputs, state)

    return 1000 * typical_seconds(run) / (10 * ENVS)


def learner_ms(agent, config: TrainConfig, chosen: str) -> float:
    """Milliseconds per agent step of one update: forward and backward over ``[T + 1, 16]``, gradient clipping and
    the optimizer's step."""
    inputs = step_inputs(UNROLL + 1, agent.obs_shape)
    batch = {**inputs, "terminal": torch.zeros(UNROLL + 1, ENVS, dtype=torch.bool),
             "action": torch.zeros(UNROLL + 1, ENVS, dtype=torch.int64),
             "policy_logits": torch.zeros(UNROLL + 1, ENVS, agent.num_actions)}
    state = agent.initial_state(ENVS)
    optimizer = RMSpropTF(agent.parameters(), lr=1e-5)
    agent.train()

    def run():
        losses = learner_losses(agent, batch, state, config, chosen)
        optimizer.zero_grad()
        losses["total_loss"].backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 40.0)
        optimizer.step()

    return 1000 * typical_seconds(run) / (UNROLL * ENVS)


def step_costs(config: TrainConfig) -> np.ndarray:
    """Milliseconds per agent step on one core (one torch thread): ``[environment, actor, learner]``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent = make_agent(config.arch, (4, 84, 84), 6)
        return np.array([environment_ms(config.env), actor_ms(agent, config.precision),
                         learner_ms(agent, config, config.precision)])
    finally:
        torch.set_num_threads(threads)


SETTLE_SECONDS = 1.0  # after a resume, the trainer's threads warm their caches again: left out of the window
MIN_UPDATES = 8  # a window lasts at least this many of the learner's updates at the bound's speed


def metrics_rows(path: Path) -> list[tuple[int, float]]:
    """``(step, wall_time)`` of each row of a run's ``metrics.csv`` (read while the trainer is paused, so every row
    is whole)."""
    if not path.exists():
        return []
    with open(path, newline="") as file:
        return [(int(row["step"]), float(row["wall_time"])) for row in csv.DictReader(file)]


def window_sps(rows: list[tuple[int, float]]) -> tuple[int, float]:
    """Steps and seconds of one window's rows, from the first row a settling second after the first (whose update
    may have begun before the pause) to the last."""
    settled = [row for row in rows if row[1] >= rows[0][1] + SETTLE_SECONDS] if rows else []
    if len(settled) < 2:
        raise RuntimeError("a window held fewer than two of the learner's updates; give --window-seconds more")
    (step0, time0), (step1, time1) = settled[0], settled[-1]
    return step1 - step0, time1 - time0


class PausedTrainer:
    """``interp train`` in a process group of its own (the learner and its actors), paused and resumed as one;
    ``flags`` are added to its command line."""

    def __init__(self, config: TrainConfig, flags: tuple[str, ...] = ()):
        command = [sys.executable, "-c", "import sys; from cli import main; sys.exit(main())", "train",
                   "--arch", config.arch, "--env", config.env, "--precision", config.precision,
                   "--steps", str(config.steps), "--checkpoint-every", str(config.checkpoint_every),
                   "--out", config.out, *flags]
        self.metrics = Run.new(config).metrics_path
        self.log = Path(f"{config.out}.log")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)

    def run_for(self, seconds: float) -> list[tuple[int, float]]:
        """Let the trainer run ``seconds``, pause it, and return the rows it wrote meanwhile."""
        known = len(metrics_rows(self.metrics))
        os.killpg(self.process.pid, signal.SIGCONT)
        time.sleep(seconds)
        self.pause()
        return metrics_rows(self.metrics)[known:]

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)
        self._check_running()

    def wait_for_first_update(self) -> None:
        while not metrics_rows(self.metrics):
            self._check_running()
            time.sleep(0.5)

    def _check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"interp train stopped: {self.log.read_text().strip()[-500:]}")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)
        self.process.send_signal(signal.SIGINT)  # the learner writes its final checkpoint and stops its actors
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def measure(config: TrainConfig, cores: int, windows: int, window_seconds: float) -> dict:
    """The three costs timed ``windows + 1`` times while the trainer is paused, with a window of the trainer
    between each two timings."""
    trainer = PausedTrainer(config)
    try:
        trainer.wait_for_first_update()
        trainer.run_for(window_seconds)  # warm-up: the actors' first rollouts, the learner's first updates
        costs = [step_costs(config)]
        seconds = max(window_seconds, MIN_UPDATES * config.unroll * config.batch_size * costs[0].sum() / (1000 * cores))
        steps, elapsed, fractions = 0, 0.0, []
        for _ in range(windows):
            window_steps, window_time = window_sps(trainer.run_for(seconds))
            costs.append(step_costs(config))
            bound = 1000 * cores / ((costs[-2] + costs[-1]) / 2).sum()
            fractions.append(window_steps / window_time / bound)
            steps, elapsed = steps + window_steps, elapsed + window_time
    finally:
        trainer.stop()
    bounds = [1000 * cores / c.sum() for c in costs]
    return {"costs": np.mean(costs, axis=0), "bounds": (min(bounds), max(bounds)), "sps": steps / elapsed,
            "fractions": fractions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,mott,adaptive,timesformer_divided")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--windows", type=int, default=6, help="windows of the trainer, each between two timings")
    parser.add_argument("--window-seconds", type=float, default=10.0,
                        help="wall time of a window (longer where the learner's updates are slow)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores of the bound (default: all)")
    args = parser.parse_args()
    reuse_freed_memory()  # as the trainer does, so the learner's cost is measured as it trains
    print(f"{args.env}, per agent step on one core (mean of {args.windows + 1} timings); bound on {args.cores} cores "
          f"(lowest / highest timing); the trainer's fraction of the bound: mean (lowest-highest) of {args.windows} "
          "windows")
    print(f"{'architecture':<21} {'precision':>9} {'env ms':>7} {'actor ms':>9} {'learner ms':>10} "
          f"{'bound SPS':>11} {'trainer SPS':>11} {'of bound':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for chosen in args.precisions.split(","):
                config = TrainConfig(arch=arch, env=args.env, steps=10**9, out=str(Path(tmp) / f"{arch}_{chosen}"),
                                     checkpoint_every=10**9, precision=chosen)
                result = measure(config, args.cores, args.windows, args.window_seconds)
                env_cost, actor, learner = result["costs"]
                low, high = result["bounds"]
                fractions = result["fractions"]
                print(f"{arch:<21} {chosen:>9} {env_cost:>7.3f} {actor:>9.3f} {learner:>10.3f} "
                      f"{f'{low:.0f} / {high:.0f}':>11} {result['sps']:>11.0f} "
                      f"{f'{np.mean(fractions):.2f} ({min(fractions):.2f}-{max(fractions):.2f})':>16}", flush=True)


if __name__ == "__main__":
    main()
