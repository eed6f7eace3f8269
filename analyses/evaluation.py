"""How well an agent plays: the returns of whole episodes, choosing actions greedily, by sampling, or at random.

Training logs the return of the sampled policy while it learns, entropy bonus included; the greedy return of a
checkpoint says what the policy has learned. The ``evaluation`` stage writes ``analysis/evaluation.csv`` for the
final checkpoint (every policy of :data:`POLICIES`), which the report shows beside the training curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analyses.stage import Job, Stage, table_of, write_table
from interp.agents import Agent
from interp.envs import make_vector_env
from interp.errors import UserError
from interp.rollout import POLICIES, VectorRollout
from interp.runs import Run


@torch.no_grad()
def play(agent: Agent | None, env_id: str, *, episodes: int = 20, policy: str = "greedy", seed: int = 0,
         **env_options) -> np.ndarray:
    """Returns ``[episodes]`` of one episode in each of ``episodes`` environments (seeded ``seed + i``), played
    together with one batched forward pass per step. ``policy``: ``greedy`` (the most likely action), ``sampled``
    (drawn from the policy with a generator seeded by ``seed``) or ``random`` (uniform; ``agent`` may be None).
    ``env_options`` (``frame_size`` included) go to :func:`interp.envs.make_vector_env`."""
    if policy not in POLICIES:
        raise UserError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if episodes < 1:
        raise UserError(f"episodes must be at least 1, not {episodes}")
    games = VectorRollout(make_vector_env(env_id, episodes, seed=seed, **env_options), policy, agent=agent,
                          seed=seed)
    returns = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    while not finished.all():  # a game's later episodes are not counted
        games.step()
        returns += np.where(finished, 0.0, games.reward.numpy())
        finished |= games.terminal.numpy()
    games.close()
    return returns


def evaluate_checkpoint(agent: Agent, env_id: str, *, step: int, episodes: int = 20, seed: int = 0,
                        **env_options) -> pd.DataFrame:
    """One row per policy of :data:`POLICIES`: ``step, policy, episodes, seed, mean_return, std_return``."""
    rows = []
    for policy in POLICIES:
        returns = play(agent, env_id, episodes=episodes, policy=policy, seed=seed, **env_options)
        rows.append({"step": step, "policy": policy, "episodes": episodes, "seed": seed,
                     "mean_return": float(returns.mean()), "std_return": float(returns.std())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class EvaluationOptions:
    episodes: int = 20
    """whole episodes the final checkpoint plays per policy"""
    seed: int = 0
    """the episodes' environments are seeded seed, seed + 1, ...; the sampled and random policies draw from it"""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.seed < 0:
            raise UserError(f"episodes must be at least 1 and the seed >= 0, got {self.episodes} and {self.seed}")


def compute(job: Job) -> pd.DataFrame:
    options: EvaluationOptions = job.options
    return evaluate_checkpoint(job.load().agent, job.environment.id, step=job.step, episodes=options.episodes,
                               seed=options.seed, **job.environment.options)


def finish(run: Run, results: dict[int, Path], options: EvaluationOptions) -> None:
    write_table(run.analysis / "evaluation.csv", table_of(results, step_column=False))


STAGE = Stage(
    name="evaluation", summary="how well the final checkpoint plays: greedy, sampled and random returns",
    description="Play whole episodes with the run's final checkpoint, choosing the most likely "
                "action (greedy), sampling from the policy (sampled), and choosing uniformly (random), in environments "
                "seeded seed, seed + 1, ...; writes RUN_DIR/analysis/evaluation.csv (step, policy, episodes, seed, "
                "mean_return, std_return).",
    options=EvaluationOptions, compute=compute, finish=finish, checkpoints="final", uses_evalset=False,
    tables=("evaluation.csv",))
