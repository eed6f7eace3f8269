"""Behavioural probe for MiniPong-TwoBall: does the agent's paddle follow the scoring ball or the decoy?"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from interp.agents.base import Agent
from interp.envs.minipong import PADDLE_H, MiniPongConfig, MiniPongEnv
from interp.rollout import rollout


def dual_ball_probe(policy: str | Callable[[np.ndarray], int], *, agent: Agent | None = None, episodes: int = 5,
                    seed: int = 0, max_steps: int = 2000, frame_size: int = 84) -> pd.DataFrame:
    """Dual ball discrimination test: play MiniPong-TwoBall with ``policy`` (of :mod:`interp.rollout`: ``"greedy"``
    with ``agent``, say, or a callable ``obs -> action``), episode ``i`` seeded ``seed + i``, and measure, for each
    ball,

    - ``arrivals``: how often the ball reached the agent's paddle line, ``intercepts``: how often the paddle
      was there to return it, and ``intercept_rate`` = intercepts / arrivals;
    - ``tracking``: the fraction of steps, among those in which both balls approach the agent, in which the
      paddle's centre is vertically nearer to this ball than to the other one;
    - ``mean_distance``: the mean vertical distance in pixels between the paddle's centre and the ball on those steps.

    Returns:
        one row per ball (``ball``, ``decoy``), with the episodes' mean return in ``df.attrs["mean_return"]``.
    """
    env = MiniPongEnv(MiniPongConfig(variant="twoball", max_steps=max_steps, frame_size=frame_size))
    names = ("ball", "decoy")
    arrivals = dict.fromkeys(names, 0)
    intercepts = dict.fromkeys(names, 0)
    nearer = dict.fromkeys(names, 0)
    distance = dict.fromkeys(names, 0.0)
    approach_steps = 0
    returns = []
    for episode in range(episodes):
        total = 0.0
        for step in rollout(env, policy, agent=agent, seed=seed + episode, episodes=1):
            total += step.reward
            for name, event in step.next_info["ball_events"].items():
                arrivals[name] += event is not None
                intercepts[name] += event == "hit"
            game = env.game
            if all(game.balls[n].vx > 0 for n in names):
                approach_steps += 1
                centre = game.player_y + PADDLE_H / 2
                gaps = {n: abs(game.balls[n].y + 1 - centre) for n in names}
                for n in names:
                    distance[n] += gaps[n]
                nearer[min(names, key=gaps.get)] += 1
        returns.append(total)
    rows = [
        {
            "ball": n,
            "arrivals": arrivals[n],
            "intercepts": intercepts[n],
            "intercept_rate": intercepts[n] / arrivals[n] if arrivals[n] else float("nan"),
            "tracking": nearer[n] / approach_steps if approach_steps else float("nan"),
            "mean_distance": distance[n] / approach_steps if approach_steps else float("nan"),
        }
        for n in names
    ]
    table = pd.DataFrame(rows)
    table.attrs["mean_return"] = float(np.mean(returns))
    return table
