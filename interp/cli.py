"""The ``interp`` command line: one subcommand per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from interp.errors import UserError

RUN_METHODS = "perturbation,gradient,smoothgrad,lrp"
"""analyses.maps.MAP_METHODS, written out so that ``--help`` does not import torch"""


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


def _short_openmp_spin() -> None:
    """Call before torch loads (the commands import it lazily): libgomp's threads waiting for work spin 20,000 times
    instead of 300,000 before they sleep, and the learner's threads leave the cores to the actor processes sooner
    (benchmarks/train_layout.py). Not sleeping at once (OMP_WAIT_POLICY=PASSIVE) keeps small forward passes fast."""
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")


def cmd_train(args: argparse.Namespace) -> None:
    _short_openmp_spin()
    from dataclasses import replace

    from trainers.config import TrainConfig, apply_preset
    from trainers.impala import resume_config, train

    given = {key: value for key, value in vars(args).items()
             if key in TrainConfig.__dataclass_fields__ and value is not None}
    if args.resume:  # the saved config, with a new step budget or new settings for the machine if given
        machine = ("steps", "device", "actors", "envs_per_actor", "learner_threads", "backend", "ray_address")
        config = resume_config(args.out, **{k: v for k, v in given.items() if k in machine})
    else:
        if not args.arch:
            raise UserError("--arch is required (see `interp train --help`)")
        config = TrainConfig(**given, agent=_key_values(args.agent_option), env_options=_key_values(args.env_option))
        if args.preset:  # a preset sets sequence and batch sizes; flags given explicitly still win
            explicit = {k: v for k, v in given.items() if k in ("unroll", "batch_size", "envs_per_actor")}
            config = replace(apply_preset(config, args.preset), **explicit)
    final = train(config, resume=args.resume)
    print(f"final checkpoint: {final}")
    print(f"run directory: {config.out} (config.json, checkpoints/, metrics.csv, tensorboard/)")


def cmd_evalset(args: argparse.Namespace) -> None:
    from analyses.evalset import evalset_from_checkpoint

    evalset = evalset_from_checkpoint(args.source, args.env, frames=args.frames, context=args.context,
                                      seed=args.seed, **_key_values(args.env_option))
    path = evalset.save(args.out)
    print(f"{path}: {len(evalset)} frames of {args.env} with masks {sorted(evalset.masks)} and {args.context} "
          f"context steps each (reference: {evalset.meta['reference']})")


def cmd_maps(args: argparse.Namespace) -> None:
    from analyses.maps import maps_for_checkpoint
    from interp.evalset import load_evalset

    methods = [m for m in args.methods.split(",") if m]
    path = maps_for_checkpoint(args.checkpoint, load_evalset(args.evalset), args.out, methods)
    print(f"wrote {path}")


def cmd_video(args: argparse.Namespace) -> None:
    from analyses.video import render_video

    path = render_video(args.checkpoint, args.env, args.frames, args.out, seed=args.seed, png_every=args.png_every,
                        **_key_values(args.env_option))
    print(f"wrote {path}")


def cmd_atom(args: argparse.Namespace) -> None:
    from analyses.atom import atom_for_run
    from interp.atom import Atom

    atom = Atom(share=args.share, alpha=args.alpha, exclusivity=args.exclusivity, target=args.target,
                output=args.output, initial_relevance=args.initial_relevance, rule=args.rule,
                first_layer=args.first_layer, zero_biases=args.zero_biases,
                absolute=args.absolute, newest_frame_only=args.newest_frame_only)
    methods = tuple(m for m in args.methods.split(",") if m)
    table = atom_for_run(args.run_dir, args.evalset, atom=atom, methods=methods, probe=args.probe,
                         workers=args.workers)
    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    print(shares.pivot(index="step", columns="object", values="value").round(3).to_string())
    out = Path(args.run_dir) / "analysis"
    print(f"wrote {out / 'atom.csv'} ({len(table)} rows) and {out / 'atom.png'}")


def cmd_overlap(args: argparse.Namespace) -> None:
    from analyses.overlap import overlap_for_run

    methods = tuple(m for m in args.methods.split(",") if m)
    table = overlap_for_run(args.run_dir, args.evalset, methods=methods, workers=args.workers)
    summary = table[table.metric.isin(["cc", "sim", "iou_top10"])].groupby(["metric", "method", "target"])
    print(summary[["value", "chance"]].mean().round(3).to_string())
    print(f"wrote {Path(args.run_dir) / 'analysis' / 'overlap.csv'} ({len(table)} rows) and overlap/*.png")


def cmd_sanity(args: argparse.Namespace) -> None:
    from analyses.sanity import sanity_for_run
    from interp.sanity import survivors

    methods = tuple(m for m in args.methods.split(",") if m)
    table = sanity_for_run(args.run_dir, args.evalset, methods=methods, checkpoint=args.checkpoint,
                           frames=args.frames)
    flagged = survivors(table)
    print(f"maps that survive randomising every layer: {', '.join(flagged) if flagged else 'none'}")
    print(f"wrote {Path(args.run_dir) / 'analysis' / 'sanity.csv'} and sanity.png")


def cmd_analyse(args: argparse.Namespace) -> None:
    from analyses.analyse import analyse_run

    seconds = analyse_run(args.run_dir, args.evalset, frames=args.frames, workers=args.workers, backend=args.backend,
                          ray_address=args.ray_address or "", episodes=args.episodes, seed=args.seed)
    print("seconds per stage: " + ", ".join(f"{stage} {value:.0f}" for stage, value in seconds.items()))


def cmd_report(args: argparse.Namespace) -> None:
    from analyses.report import write_report

    if args.out:
        out = Path(args.out)
    elif len(args.run_dirs) == 1:
        out = Path(args.run_dirs[0]) / "report.html"
    else:
        raise UserError("--out is required when comparing several runs")
    path = write_report(args.run_dirs, out, evalset=args.evalset, video_frames=args.video_frames)
    print(f"wrote {path}")


def cmd_quickstart(args: argparse.Namespace) -> None:
    _short_openmp_spin()
    from analyses.quickstart import quickstart

    report = quickstart(args.out, seed=args.seed)
    print(f"report: {report.resolve()}")
    print(f"runs, analyses and videos: {Path(args.out).resolve()}/<agent>/ (checkpoints/, analysis/)")


def _key_values(items: list[str] | None) -> dict:
    """``["mem_len=40", "gating=false"]`` -> ``{"mem_len": 40, "gating": False}`` (values parsed as JSON)."""
    import json

    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"expected KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Train attention-based Atari agents and analyse them: attention, saliency, LRP, ATOM.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    quick = commands.add_parser(
        "quickstart", help="the whole mission on MiniPong in minutes: train two agents, analyse, report",
        description="Train the baseline (84x84 frames) and a TimeSformer attention agent (42x42 frames) on "
                    "MiniPong-v0 with checkpoints across training, build an evaluation set per agent, run "
                    "attention maps, perturbation, gradient and LRP saliency, ATOM, agreement and sanity checks "
                    "over every checkpoint, render an "
                    "overlay video per agent and write DIR/report.html comparing them. Run again on the same "
                    "folder, it reuses what is finished.",
        epilog="example: interp quickstart --out runs/quickstart",
    )
    quick.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    quick.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    quick.set_defaults(run=cmd_quickstart)

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

    train = commands.add_parser(
        "train", help="train an agent with IMPALA / V-trace, writing checkpoints across training",
        description="Train an agent with IMPALA / V-trace. Actor processes step batches of environments with "
                    "batched inference; the learner applies V-trace and writes RUN_DIR/config.json, "
                    "RUN_DIR/checkpoints/step_<12 digits>.pt (at step 0, log-spaced early, every --checkpoint-every "
                    "steps and at the end), RUN_DIR/metrics.csv and TensorBoard events. Ctrl-C (or SIGTERM) writes a "
                    "final checkpoint and exits cleanly; --resume continues.",
        epilog="example: interp train --arch baseline --env MiniPong-v0 --steps 500000 --out runs/baseline   |   "
               "actors on Ray: ... --backend ray [--ray-address HEAD_IP:6379]",
    )
    train.add_argument("--arch", help="architecture: baseline, mott, adaptive, spatiotemporal, "
                       "spatiotemporal_oneshot, timesformer_divided, timesformer_joint")
    train.add_argument("--env", help="environment id (default: MiniPong-v0)")
    train.add_argument("--steps", type=int, help="environment steps to train for (default: 1000000)")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--actors", type=int, help="actor processes (default: 2; 0 = in-process, reproducible)")
    train.add_argument("--envs-per-actor", type=int, help="environments per actor (default: 8)")
    train.add_argument("--learner-threads", type=int,
                       help="torch threads of the learner (default: one per core; on 2 cores with 1 actor, 1 can be "
                            "fastest)")
    train.add_argument("--batch-size", type=int, help="rollouts per update, in environments (default: 16)")
    train.add_argument("--unroll", type=int, help="rollout length T (default: 20)")
    train.add_argument("--optimizer", choices=("rmsprop_tf1", "rmsprop_torch"),
                       help="RMSProp as IMPALA ran it (rmsprop_tf1, default) or torch's (rmsprop_torch)")
    train.add_argument("--lr", type=float, help="RMSprop learning rate (default: 6e-4)")
    train.add_argument("--entropy-cost", type=float, help="entropy bonus weight (default: 0.01)")
    train.add_argument("--seed", type=int, help="random seed (default: 0)")
    train.add_argument("--device", help="cpu or cuda, for the learner (default: cpu)")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                       help="bf16 autocast for the forward and backward passes (default: auto, bf16 where native)")
    train.add_argument("--checkpoint-every", type=int, help="steps between regular checkpoints (default: 100000)")
    train.add_argument("--first-checkpoint", type=int,
                       help="first of the log-spaced early checkpoints after step 0 (default: 100)")
    train.add_argument("--frame-size", type=int, help="observation side, 84 or 42 (default: 84)")
    train.add_argument("--preset", help="named hyperparameters: thesis (Appendix A) or monobeast")
    train.add_argument("--agent-option", action="append", metavar="KEY=VALUE",
                       help="architecture option, repeatable (e.g. mem_len=40)")
    train.add_argument("--env-option", action="append", metavar="KEY=VALUE",
                       help='environment option, repeatable (e.g. points=3, modifications=["lazy_enemy"])')
    train.add_argument("--backend", choices=("local", "ray"),
                       help="actors as local processes (default) or as Ray actors (needs pip install '.[ray]')")
    train.add_argument("--ray-address", help="with --backend ray: a running Ray cluster (default: start Ray here)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out (steps, optimizer, RNG)")
    train.set_defaults(run=cmd_train)

    evalset = commands.add_parser(
        "evalset", help="build a fixed evaluation set of frames with object masks and history",
        description="Play a reference policy (a checkpoint, or a run directory's final checkpoint) and keep frames "
                    "in which every object is present and no two overlap, each with the steps before it, so that "
                    "every checkpoint builds its own state on the same history.",
        epilog="example: interp evalset runs/baseline --env MiniPong-v0 --frames 150 --out runs/eval.npz",
    )
    evalset.add_argument("source", help="checkpoint file or run directory")
    evalset.add_argument("--env", required=True, help="environment id")
    evalset.add_argument("--frames", type=int, default=150, help="frames to keep (default: 150)")
    evalset.add_argument("--out", required=True, help="output .npz file")
    evalset.add_argument("--context", type=int, default=32, help="history steps kept per frame (default: 32)")
    evalset.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    evalset.add_argument("--env-option", action="append", metavar="KEY=VALUE", help="environment option")
    evalset.set_defaults(run=cmd_evalset)

    maps = commands.add_parser(
        "maps", help="attention and saliency maps of a checkpoint on an evaluation set",
        description="Write DIR/maps.npz: <method>/actor and <method>/critic float32 [N, 84, 84] per saliency "
                    "method, and attention/<hook name> per attention hook (see the README for the layouts).",
        epilog="example: interp maps runs/baseline/checkpoints/step_000002000000.pt --evalset runs/eval.npz "
               "--out runs/maps --methods perturbation,gradient",
    )
    maps.add_argument("checkpoint", help="checkpoint file")
    maps.add_argument("--evalset", required=True, help="evaluation set (.npz from `interp evalset`)")
    maps.add_argument("--out", required=True, help="output folder")
    maps.add_argument("--methods", default="perturbation,gradient",
                      help="comma-separated: perturbation, gradient, integrated_gradients, smoothgrad, occlusion, "
                           "lrp (default: perturbation,gradient)")
    maps.set_defaults(run=cmd_maps)

    atom = commands.add_parser(
        "atom", help="LRP-based ATOM object metrics for every checkpoint of a run",
        description="Compute ATOM (Beylier et al. 2024) for every checkpoint of RUN_DIR on one evaluation set: "
                    "hierarchical attention per object, combinatorial attention per object set, the same object "
                    "profile from saliency methods with their Spearman rank correlations, the dual-ball probe on "
                    "MiniPong-TwoBall, and the return. Writes RUN_DIR/analysis/atom.csv and atom.png; checkpoints "
                    "already analysed with the same evaluation set and options are not recomputed.",
        epilog="example: interp atom runs/baseline --evalset runs/eval.npz",
    )
    atom.add_argument("run_dir", help="run directory (from `interp train`)")
    atom.add_argument("--evalset", required=True, help="evaluation set (.npz from `interp evalset`)")
    atom.add_argument("--methods", default=RUN_METHODS,
                      help=f"saliency methods to compare object profiles with (default: {RUN_METHODS}; empty: none)")
    atom.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                      help="run the dual-ball probe per checkpoint (default: on MiniPong-TwoBall)")
    atom.add_argument("--target", default="actor", choices=("actor", "critic"), help="output explained")
    atom.add_argument("--output", "--seed-output", default="action", choices=("action", "logits"),
                      help="the actor's output explained in pass 1: the chosen action's logit or all logits "
                           "(default: action)")
    atom.add_argument("--initial-relevance", default="one", choices=("one", "value"),
                      help="pass 1 starts from 1 (default) or from the output's value f(x) at the explained output")
    atom.add_argument("--rule", default="zplus", help="LRP rule: zplus (default), epsilon, epsilon_plus, ...")
    atom.add_argument("--first-layer", default=None, help="first-layer rule: flat, wsquare, zplus, epsilon")
    atom.add_argument("--zero-biases", action="store_true", help="biases take no relevance")
    atom.add_argument("--absolute", action="store_true", help="select and weight neurons by |R_k|")
    atom.add_argument("--newest-frame-only", action="store_true",
                      help="object relevance from the newest stacked frame only (default: all four)")
    atom.add_argument("--share", type=float, default=0.9, help="relevance share of selected neurons (default: 0.9)")
    atom.add_argument("--alpha", type=float, default=0.25, help="combinatorial threshold (default: 0.25)")
    atom.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    atom.add_argument("--exclusivity", type=float, default=0.0,
                      help="objects outside a set may hold this fraction of the largest (default: 0, exactly none)")
    atom.set_defaults(run=cmd_atom)

    overlap = commands.add_parser(
        "overlap", help="agreement of attention heads with saliency for every checkpoint of a run",
        description="For every checkpoint of RUN_DIR on one evaluation set: each attention head against each "
                    "saliency method (actor and critic) by CC, Spearman, KL both ways, SIM, IoU of the top 5/10/20%%, "
                    "NSS and AUC, EMD, each with a chance level from spatially shuffled attention, and the attention "
                    "and saliency mass on each object beside the ATOM share. Writes RUN_DIR/analysis/overlap.csv "
                    "and overlap/<metric>.png.",
        epilog="example: interp overlap runs/mott --evalset runs/eval.npz --methods perturbation,gradient,lrp",
    )
    overlap.add_argument("run_dir", help="run directory (from `interp train`)")
    overlap.add_argument("--evalset", required=True, help="evaluation set (.npz from `interp evalset`)")
    overlap.add_argument("--methods", default=RUN_METHODS, help=f"saliency methods (default: {RUN_METHODS})")
    overlap.add_argument("--workers", type=int, default=2, help="worker processes for the maps (default: 2)")
    overlap.set_defaults(run=cmd_overlap)

    sanity = commands.add_parser(
        "sanity", help="cascading randomisation sanity check of attention and saliency maps",
        description="Randomise the layers of a checkpoint (default: the run's final one) top-down and measure how "
                    "similar (Spearman, SSIM) each attention head's and each saliency method's maps stay to the "
                    "trained model's. Writes RUN_DIR/analysis/sanity.csv, sanity_flags.csv (maps that survive "
                    "full randomisation) and sanity.png.",
        epilog="example: interp sanity runs/mott --evalset runs/eval.npz --frames 16",
    )
    sanity.add_argument("run_dir", help="run directory (from `interp train`)")
    sanity.add_argument("--evalset", required=True, help="evaluation set (.npz from `interp evalset`)")
    sanity.add_argument("--checkpoint", help="checkpoint to randomise (default: the run's final one)")
    sanity.add_argument("--frames", type=int, default=16, help="frames of the evaluation set used (default: 16)")
    sanity.add_argument("--methods", default=RUN_METHODS, help=f"saliency methods (default: {RUN_METHODS})")
    sanity.set_defaults(run=cmd_sanity)

    analyse = commands.add_parser(
        "analyse", help="everything for a run: evaluation set, ATOM, maps, agreement, sanity checks, returns",
        description="Build the evaluation set when none is given (RUN_DIR/analysis/evalset.npz, from the final "
                    "checkpoint), then compute the maps, ATOM, agreement (attention agents) and the sanity checks "
                    "over all checkpoints in worker processes (or Ray tasks), reusing results already on disk; last, "
                    "the final checkpoint's returns playing greedily, sampling and at random "
                    "(RUN_DIR/analysis/evaluation.csv).",
        epilog="example: interp analyse runs/mott   |   on a Ray cluster: interp analyse runs/mott --backend ray "
               "--ray-address HEAD_IP:6379",
    )
    analyse.add_argument("run_dir", help="run directory (from `interp train`)")
    analyse.add_argument("--evalset", help="evaluation set (default: build one from the final checkpoint)")
    analyse.add_argument("--frames", type=int, default=150, help="frames of a new evaluation set (default: 150)")
    analyse.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    analyse.add_argument("--episodes", type=int, default=20,
                         help="whole episodes the final checkpoint plays per policy (default: 20)")
    analyse.add_argument("--seed", type=int, default=0,
                         help="seed of those episodes and of a new evaluation set (default: 0)")
    analyse.add_argument("--backend", choices=("local", "ray"), default="local",
                         help="checkpoint x stage jobs in local processes (default) or as Ray tasks")
    analyse.add_argument("--ray-address", help="with --backend ray: a running Ray cluster (default: $RAY_ADDRESS, "
                                               "else Ray started here)")
    analyse.set_defaults(run=cmd_analyse)

    report = commands.add_parser(
        "report", help="a self-contained HTML page for a run, or comparing runs",
        description="Write one HTML file with everything embedded: configuration and parameter counts, training "
                    "curves, ATOM trajectories, agreement with chance levels, sanity checks, attention stills, the "
                    "overlay video, and the numbers behind every plot as downloadable CSV. Sections whose analysis "
                    "has not run yet say which command produces them (`interp analyse` runs them all).",
        epilog="example: interp report runs/baseline runs/mott --out runs/comparison.html",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    report.add_argument("--out", help="output .html (default: RUN_DIR/report.html for one run)")
    report.add_argument("--evalset", help="evaluation set for the stills (default: RUN_DIR/analysis/evalset.npz)")
    report.add_argument("--video-frames", type=int, default=60,
                        help="steps of an overlay video rendered when a run has none (default: 60; 0: none)")
    report.set_defaults(run=cmd_report)

    video = commands.add_parser(
        "video", help="overlay video: frame, attention heads, actor and critic saliency",
        description="Play a checkpoint's agent and write an h264 mp4 with titled panels side by side: the raw "
                    "frame, each attention head overlaid, and the actor and critic perturbation saliency (OpenCV JET "
                    "heat maps alpha-blended as in the thesis), with the step and the return.",
        epilog="example: interp video runs/baseline/checkpoints/step_000002000000.pt --env MiniPong-v0 --frames 300 "
               "--out runs/baseline.mp4",
    )
    video.add_argument("checkpoint", help="checkpoint file")
    video.add_argument("--env", required=True, help="environment id")
    video.add_argument("--frames", type=int, default=300, help="steps to play (default: 300)")
    video.add_argument("--out", required=True, help="output .mp4")
    video.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    video.add_argument("--png-every", type=int, default=0, help="also write every K-th frame as PNG (default: none)")
    video.add_argument("--env-option", action="append", metavar="KEY=VALUE", help="environment option")
    video.set_defaults(run=cmd_video)
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
    except BrokenPipeError:  # output piped into a reader that stopped early (`interp envs | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"interp {args.command}: interrupted; finished results are on disk", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
