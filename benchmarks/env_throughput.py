"""Environment steps per second, side by side in one run.

    .venv/bin/python benchmarks/env_throughput.py [--seconds 3] [--num-envs 16]

Rows: MiniPong single and batched, ALE Pong single (gymnasium AtariPreprocessing), ALE Pong vectorised
(ale-py's native vector env), ALE Pong with OCAtari object masks. Random actions; every environment is reset
when its episode ends (the vector envs reset themselves).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from interp.envs import make_env, make_vector_env


def single_env_sps(env_id: str, seconds: float, **kwargs) -> float:
    env = make_env(env_id, seed=0, **kwargs)
    env.reset()
    actions = np.random.default_rng(0).integers(env.action_space.n, size=100_000)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
            steps += 1
            if terminated or truncated:
                env.reset()
    return steps / (time.perf_counter() - start)


def vector_env_sps(env_id: str, num_envs: int, seconds: float) -> float:
    envs = make_vector_env(env_id, num_envs, seed=0)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.integers(envs.single_action_space.n, size=num_envs))
        steps += num_envs
    envs.close()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per row")
    parser.add_argument("--num-envs", type=int, default=16, help="environments per batch")
    args = parser.parse_args()
    n = args.num_envs
    rows = [
        ("MiniPong-v0 single", single_env_sps("MiniPong-v0", args.seconds)),
        ("MiniPong-v0 single, object masks", single_env_sps("MiniPong-v0", args.seconds, object_masks=True)),
        (f"MiniPong-v0 batched x{n}", vector_env_sps("MiniPong-v0", n, args.seconds)),
        ("ALE/Pong-v5 single", single_env_sps("ALE/Pong-v5", args.seconds)),
        (f"ALE/Pong-v5 vectorised x{n} (ale-py native)", vector_env_sps("ALE/Pong-v5", n, args.seconds)),
        ("ALE/Pong-v5 single, OCAtari object masks", single_env_sps("ALE/Pong-v5", args.seconds, object_masks=True)),
    ]
    reference = rows[3][1]
    print(f"{'environment':<45} {'steps/s':>10} {'vs ALE single':>14}")
    for name, sps in rows:
        print(f"{name:<45} {sps:>10,.0f} {sps / reference:>13.2f}x")


if __name__ == "__main__":
    main()
