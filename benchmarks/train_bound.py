"""The compute bound of training on this machine, and the trainer's measured speed as a fraction of it.

    .venv/bin/python benchmarks/train_bound.py [--archs baseline,mott,adaptive,timesformer_divided]
                                               [--precisions fp32,bf16] [--env ALE/Pong-v5] [--seconds 90]

Every agent step costs the same three pieces of work, whatever the trainer: the environment's step, the actor's
share of a batched forward pass (16 environments), and the learner's share of a forward and backward pass over a
batch (16 rollouts of 20 steps) with the optimizer's step. Each is timed here on one core (one torch thread, one
environment thread; the median of five timings), so no trainer of this network on ``C`` cores can exceed
``C / (env + actor + learner)`` steps per second at the machine's typical speed: the bound. Then ``interp train``
runs with its defaults for ``--seconds`` and its steps per second are printed beside the bound (steady state, from
``metrics.csv``). The three costs are measured right before and right after each trainer run, and the row gives
their means, the bound of each measurement and the fraction of the mean bound: a shared virtual machine's speed
drifts by tens of percent within minutes, and the two bounds show by how much it drifted while the trainer ran (a
fraction is only as good as they agree). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from train_throughput import measure_config

from interp import precision
from interp.agents import make_agent
from interp.envs import make_vector_env
from trainers.config import TrainConfig
from trainers.impala import learner_losses, reuse_freed_memory
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="baseline,mott,adaptive,timesformer_divided")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--seconds", type=float, default=90.0, help="wall time of each trainer run")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores of the bound (default: all)")
    args = parser.parse_args()
    reuse_freed_memory()  # as the trainer does, so the learner's cost is measured as it trains
    print(f"{args.env}, per agent step on one core (mean of before and after the trainer); bound on {args.cores} "
          "cores, measured before and after")
    print(f"{'architecture':<21} {'precision':>9} {'env ms':>7} {'actor ms':>9} {'learner ms':>10} "
          f"{'bound SPS':>15} {'trainer SPS':>11} {'of bound':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for chosen in args.precisions.split(","):
                config = TrainConfig(arch=arch, env=args.env, steps=10**9, out=str(Path(tmp) / f"{arch}_{chosen}"),
                                     checkpoint_every=10**9, precision=chosen)
                costs_before = step_costs(config)
                measured = measure_config(config, args.seconds)
                costs_after = step_costs(config)
                before, after = (1000 * args.cores / costs.sum() for costs in (costs_before, costs_after))
                env_cost, actor, learner = (costs_before + costs_after) / 2
                bound = 1000 * args.cores / (env_cost + actor + learner)
                print(f"{arch:<21} {chosen:>9} {env_cost:>7.3f} {actor:>9.3f} {learner:>10.3f} "
                      f"{f'{before:.0f} / {after:.0f}':>15} {measured:>11.0f} {measured / bound:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
