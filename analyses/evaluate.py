"""How well an agent plays: the returns of whole episodes, choosing actions greedily, by sampling, or at random.

Training logs the return of the sampled policy while it learns, entropy bonus included; the greedy return of a
checkpoint says what the policy has learned. ``interp analyse`` writes ``analysis/evaluation.csv`` for the final
checkpoint (every policy of :data:`POLICIES`), which the report shows beside the training curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analyses.runs import checkpoint_step, load_result, run_checkpoints, save_result
from interp.agents import Agent, load_checkpoint
from interp.agents.stepper import Stepper
from interp.envs import make_vector_env
from interp.errors import UserError

POLICIES = ("greedy", "sampled", "random")


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
    if agent is None and policy != "random":
        raise ValueError(f"the {policy} policy needs an agent")
    envs = make_vector_env(env_id, episodes, seed=seed, **env_options)
    obs, _ = envs.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    num_actions = int(envs.single_action_space.n)
    stepper = (Stepper(agent, episodes, policy="greedy" if policy == "greedy" else "sample", generator=generator)
               if policy != "random" else None)
    returns = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    while not finished.all():
        if stepper is None:
            actions = torch.randint(num_actions, (episodes,), generator=generator)
        else:
            actions = stepper.forward(torch.from_numpy(np.asarray(obs)))["action"].cpu()
        obs, rewards, terminated, truncated, _ = envs.step(actions.numpy())
        returns += np.where(finished, 0.0, rewards)
        finished |= np.logical_or(terminated, truncated)
        if stepper is not None:  # a finished game's next episode is not counted: no state reset needed
            stepper.advance(actions, rewards, starts=np.zeros(episodes, dtype=bool))
    envs.close()
    return returns


def evaluate_checkpoint(checkpoint: str | Path, env_id: str, *, episodes: int = 20, seed: int = 0,
                        **env_options) -> pd.DataFrame:
    """One row per policy of :data:`POLICIES`: ``step, policy, episodes, seed, mean_return, std_return``."""
    agent = load_checkpoint(checkpoint).agent.eval()
    rows = []
    for policy in POLICIES:
        returns = play(agent, env_id, episodes=episodes, policy=policy, seed=seed, **env_options)
        rows.append({"step": checkpoint_step(Path(checkpoint)), "policy": policy, "episodes": episodes, "seed": seed,
                     "mean_return": float(returns.mean()), "std_return": float(returns.std())})
    return pd.DataFrame(rows)


def evaluate_run(run_dir: str | Path, env_id: str, *, episodes: int = 20, seed: int = 0,
                 **env_options) -> pd.DataFrame:
    """:func:`evaluate_checkpoint` for the run's final checkpoint, kept in ``RUN_DIR/analysis/evaluation.csv``
    (computed again only for a newer final checkpoint, another number of episodes or another seed)."""
    final = run_checkpoints(Path(run_dir))[-1]
    path = Path(run_dir) / "analysis" / "evaluation.csv"
    if path.exists():
        table = load_result(path)
        kept = {column: set(table[column]) for column in ("step", "episodes", "seed") if column in table}
        if kept == {"step": {checkpoint_step(final)}, "episodes": {episodes}, "seed": {seed}}:
            return table
    table = evaluate_checkpoint(final, env_id, episodes=episodes, seed=seed, **env_options)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_result(path, table)
    return table
