"""The ``interp`` command line: one subcommand per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from interp.errors import UserError


def cmd_envs(args: argparse.Namespace) -> None:
    from interp.envs import MINIPONG_VARIANTS, TESTED_ATARI_GAMES, env_ids

    print("MiniPong (built in, exact object masks):")
    for env_id in MINIPONG_VARIANTS:
        print(f"  {env_id}")
    print("ALE games (standard Atari preprocessing, object masks from OCAtari), tested:")
    for env_id in TESTED_ATARI_GAMES:
        print(f"  {env_id}")
    others = len(env_ids()) - len(MINIPONG_VARIANTS)
    print(f"  ... and every other ALE id ({others} in all); HackAtari modifications with modifications=[...]")


def cmd_demo(args: argparse.Namespace) -> None:
    import numpy as np

    from interp.envs import make_env
    from interp.render import gray_to_rgb, overlay_masks, upscale, write_mp4

    out = Path(args.out)
    for env_id in args.env or ["MiniPong-v0", "ALE/Pong-v5"]:
        env = make_env(env_id, seed=args.seed, object_masks=True)
        obs, info = env.reset()
        frames, returns, episode_return = [], [], 0.0
        start = time.perf_counter()
        for _ in tqdm(range(args.steps), desc=env_id, unit="step", leave=False):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            episode_return += float(reward)
            newest = gray_to_rgb(obs[-1])
            panels = [upscale(env.render(), 336), upscale(newest, 336),
                      upscale(overlay_masks(newest, info["object_masks"]), 336)]
            frames.append(np.concatenate(panels, axis=1))
            if terminated or truncated:
                returns.append(episode_return)
                episode_return = 0.0
                obs, info = env.reset()
        seconds = time.perf_counter() - start
        video = write_mp4(out / f"{env_id.replace('/', '_')}.mp4", frames, fps=30)
        finished = f"{len(returns)} episodes, mean return {np.mean(returns):.2f}" if returns else "no episode ended"
        print(f"{env_id}: {args.steps} random-policy steps with object masks and rendering in {seconds:.1f}s "
              f"({finished}); objects {sorted(info['object_masks'])}; video {video}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Train attention-based Atari agents and analyse them: attention, saliency, LRP, ATOM.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    envs = commands.add_parser("envs", help="list the environments", description="List the environment ids.",
                               epilog="example: interp envs")
    envs.set_defaults(run=cmd_envs)

    demo = commands.add_parser(
        "demo", help="play environments with object masks and write overlay videos",
        description="Play each environment with a random policy and write an mp4 per environment: the raw frame, "
                    "the newest preprocessed frame, and its object masks.",
        epilog="example: interp demo --out runs/demo --env MiniPong-TwoBall-v0 --steps 300",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--env", action="append", help="environment id, repeatable "
                      "(default: MiniPong-v0 and ALE/Pong-v5)")
    demo.add_argument("--steps", type=int, default=300, help="steps per environment (default: 300)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (UserError, FileNotFoundError) as error:
        if args.debug:
            raise
        print(f"interp {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
