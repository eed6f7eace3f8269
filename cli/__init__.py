"""The ``interp`` command line: one subcommand per job, each a thin layer over the library.

``interp train``'s flags come from :class:`trainers.config.TrainConfig` and each analysis command's from its stage's
options (:data:`analyses.STAGES`), through :mod:`interp.options`: a field added there is a flag here, with its
docstring as help.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from interp import options as flags
from interp.errors import UserError
from interp.files import check_writable as _check_writable


def check_writable(path, *, folder: bool = False) -> Path:
    """An output the command may write (:func:`interp.files.check_writable`) that no run owns: a file another
    command wrote as part of a run (its configuration, metrics, trainer state, checkpoints, analysis tables) is never
    written over by an unrelated output."""
    from interp.runs import owner_of

    target = _check_writable(path, folder=folder)
    owner = "" if folder else owner_of(target)
    if owner:
        raise UserError(f"{target} belongs to {owner}; write this output somewhere else")
    return target


RUN_FLAGS = ("evalset", "out", "workers", "backend", "ray_address")


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
    from interp.rollout import rollout

    if args.steps < 1 or args.seed < 0:
        raise UserError(f"demo needs steps >= 1 and a seed >= 0, got {args.steps} and {args.seed}")
    out = check_writable(args.out, folder=True)
    for env_id in args.env or ["MiniPong-v0", "ALE/Pong-v5"]:
        env = make_env(env_id, seed=args.seed, object_masks=True)
        frames, returns = [], []
        start = time.perf_counter()
        transitions = rollout(env, "random", seed=args.seed, steps=args.steps, render=True)
        for step in tqdm(transitions, total=args.steps, desc=env_id, unit="step", leave=False):
            newest = gray_to_rgb(step.obs[-1])
            panels = [upscale(step.rgb, 336), upscale(newest, 336),
                      upscale(overlay_masks(newest, step.info["object_masks"]), 336)]
            frames.append(np.concatenate(panels, axis=1))
            if step.ended:
                returns.append(step.episode_return + step.reward)
        seconds = time.perf_counter() - start
        video = write_mp4(out / f"{env_id.replace('/', '_')}.mp4", frames, fps=30)
        finished = f"{len(returns)} episodes, mean return {np.mean(returns):.2f}" if returns else "no episode ended"
        print(f"{env_id}: {args.steps} random-policy steps with object masks and rendering in {seconds:.1f}s "
              f"({finished}); objects {sorted(step.info['object_masks'])}; video {video}")


def _short_openmp_spin() -> None:
    """Call before torch loads: libgomp's threads waiting for work spin 20,000 times instead of 300,000 before they
    sleep, so the learner's threads leave the cores to the actor processes sooner (benchmarks/train_layout.py). Not
    sleeping at once (OMP_WAIT_POLICY=PASSIVE) keeps small forward passes fast."""
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")


def cmd_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from trainers.config import TrainConfig, configure
    from trainers.impala import resume_config, train

    check_writable(args.out, folder=True)
    given = flags.values(TrainConfig, args)
    if args.resume:  # the saved config, with a new step budget or new settings for the machine if given
        # flags that repeat the run's settings are fine, so the first command line plus --resume works
        saved = resume_config(args.out)
        options = {name: {**getattr(saved, name), **given[name]} for name in ("agent", "env_options") if name in given}
        config = replace(saved, **{**given, **options, **({"arch": args.arch} if args.arch else {})})
        if changed := config.changed_from(saved):
            names = ", ".join(f"{flags.flag_name(TrainConfig, name)} {ours} (the run's: {theirs})"
                              for name, (ours, theirs) in changed.items())
            raise UserError(f"--resume continues the run as it was configured; only the machine's settings may "
                            f"change ({', '.join(TrainConfig.resumable())}), not {names}")
    else:
        if not args.arch:
            raise UserError("--arch is required (see `interp train --help`)")
        config = configure(args.arch, args.out, given)
    final = train(config, resume=args.resume)
    print(f"final checkpoint: {final}")
    print(f"run directory: {config.out} (config.json, checkpoints/, metrics.csv, tensorboard/)")


def cmd_evalset(args: argparse.Namespace) -> None:
    from analyses.evalset import evalset_from_checkpoint

    check_writable(args.out)
    evalset = evalset_from_checkpoint(args.source, args.env, frames=args.frames, context=args.context,
                                      seed=args.seed, env_options=_env_options(args))
    path = evalset.save(args.out)
    print(f"{path}: {len(evalset)} frames of {args.env} with masks {sorted(evalset.masks)} and {args.context} "
          f"context steps each (reference: {evalset.meta['reference']})")


def _env_options(args: argparse.Namespace) -> dict:
    """``--env-option KEY=VALUE`` items, without the ones the command sets itself."""
    from interp.envs import check_user_options

    return check_user_options(flags.key_values(getattr(args, "env_option", None)))


def _open_run(args: argparse.Namespace):
    from interp.runs import Run

    run = Run.open(args.run_dir, analysis=args.out, env=args.env, steps_from=args.steps_from)
    for note in run.notes:
        print(f"interp {args.command}: note: {note}", file=sys.stderr)
    try:
        check_writable(run.analysis, folder=True)
    except UserError as error:
        raise UserError(f"{error}; give --out for the analysis") from None
    return run


def cmd_stage(args: argparse.Namespace) -> None:
    """One analysis stage over a run (and the stages it reads); ``maps`` and ``video`` also on one checkpoint."""
    from analyses import STAGES
    from analyses.analyse import analyse_run
    from analyses.maps import MapsOptions

    stage = STAGES[args.stage]
    options = flags.build(stage.options, args)
    if Path(args.run_dir).is_file() and stage.on_a_checkpoint:
        return _one_checkpoint(stage.name, args, options)
    chosen = {stage.name: options}
    if "maps" in stage.needs and getattr(options, "methods", None) is not None:
        chosen["maps"] = MapsOptions(methods=options.methods)  # compute only the maps this stage reads
    run = _open_run(args)
    analyse_run(run, args.evalset, stages=(stage.name,), options=chosen, workers=args.workers,
                backend=args.backend, ray_address=args.ray_address or "", device=args.device, log=lambda line: None)
    written = sorted(str(path) for path in run.analysis.iterdir() if path.name != "cache" and path.name[0] != ".")
    print(f"{stage.name}: done; {run.analysis} holds {', '.join(Path(p).name for p in written)}")


def _one_checkpoint(name: str, args: argparse.Namespace, options) -> None:
    """``interp maps CHECKPOINT --evalset E --out DIR`` and ``interp video CHECKPOINT --out FILE [--env ENV]``."""
    from analyses.maps import compute_maps
    from analyses.stage import Job, exact_arithmetic, save_result
    from analyses.video import render_video
    from interp.devices import resolve_device
    from interp.evalset import load_evalset
    from interp.importers import load_any
    from interp.runs import Environment

    if not args.out:
        raise UserError(f"interp {name} on one checkpoint needs --out (see `interp {name} --help`)")
    check_writable(args.out, folder=name == "maps")
    loaded = load_any(args.run_dir)
    evalset = load_evalset(args.evalset) if name == "maps" and args.evalset else None
    env_id = (evalset.env if evalset is not None else None) or args.env or loaded.meta.get("env")
    if not env_id or (name == "maps" and evalset is None):
        raise UserError(f"interp {name} on one checkpoint needs " + ("--evalset" if name == "maps" else "--env"))
    preprocessing = {"preprocessing": loaded.meta["preprocessing"]} if loaded.meta.get("preprocessing") else {}
    environment = Environment(env_id, {"frame_size": loaded.agent.obs_shape[-1], **preprocessing,
                                       **_env_options(args)})
    job = Job(name, Path(args.run_dir), int(loaded.meta.get("step", 0)), environment, None, options,
              loaded.agent.name, device=resolve_device(args.device))
    agent = job.load(evalset).agent
    with exact_arithmetic():
        if name == "maps":
            path = Path(args.out) / "maps.npz"
            save_result(path, compute_maps(agent, evalset.steps(agent), options.methods))
        else:
            path = render_video(agent, env_id, options.frames, args.out, seed=options.seed,
                                png_every=args.png_every, **environment.options)
    print(f"wrote {path}")


def cmd_analyse(args: argparse.Namespace) -> None:
    from analyses.analyse import analyse_run
    from analyses.evaluation import EvaluationOptions

    options = {"evaluation": EvaluationOptions(episodes=args.episodes, seed=args.seed)}
    seconds = analyse_run(_open_run(args), args.evalset, stages=args.stages, frames=args.frames, seed=args.seed,
                          options=options, workers=args.workers, backend=args.backend,
                          ray_address=args.ray_address or "", device=args.device)
    print("seconds per stage: " + ", ".join(f"{stage} {value:.0f}" for stage, value in seconds.items()))


def cmd_report(args: argparse.Namespace) -> None:
    from analyses.analyse import analyse_run
    from analyses.report import write_report
    from analyses.video import VideoOptions
    from interp.runs import Run

    if args.video_frames < 0:
        raise UserError(f"--video-frames is a number of steps, >= 0, not {args.video_frames}")
    if not args.out and len(args.run_dirs) > 1:
        raise UserError("--out is required when comparing several runs")
    runs = [Run.open(path, env=args.env, steps_from=args.steps_from) for path in args.run_dirs]
    check_writable(args.out or runs[0].directory / "report.html")
    for run in runs:  # the pictures the report shows, rendered once from the run's final checkpoint
        evalset = Path(args.evalset) if args.evalset else run.evalset_path
        wanted = (("stills",) if evalset.exists() else ()) + (("video",) if args.video_frames else ())
        options = {"video": VideoOptions(frames=args.video_frames)} if args.video_frames else {}
        if wanted:
            analyse_run(run, evalset if evalset.exists() else None, stages=wanted, options=options,
                        device=args.device, log=lambda line: None)
    path = write_report(runs, args.out or runs[0].directory / "report.html")
    print(f"wrote {path}")


def cmd_study(args: argparse.Namespace) -> None:
    from analyses.study import StudyOptions, run_study

    if args.cpus_per_run < 1 or args.gpus_per_run < 0:
        raise UserError(f"--cpus-per-run must be >= 1 and --gpus-per-run >= 0, got {args.cpus_per_run} and "
                        f"{args.gpus_per_run}")
    per_arch = dict(_per_arch(item) for item in args.per_arch or [])
    options = flags.build(StudyOptions, args, train=_train_settings(args), per_arch=per_arch)
    check_writable(args.out, folder=True)
    table = run_study(options, args.out, backend=args.backend, ray_address=args.ray_address or "",
                      cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    print(f"{len(table)} runs; {Path(args.out) / 'study.csv'}, summary.csv, report.html")


STUDY_EXCLUDED = ("seed", "backend", "ray_address")
"""interp train's settings a study sets itself: the seed from --seeds, and where its runs go (its own --backend)"""


def _train_settings(args: argparse.Namespace) -> dict:
    from trainers.config import TrainConfig

    return {k: v for k, v in flags.values(TrainConfig, args).items() if k not in STUDY_EXCLUDED}


def _per_arch(item: str) -> tuple[str, dict]:
    """``ARCH=FLAGS`` (e.g. ``mott=--lr 1e-3 --agent-option mem_len=8``) -> the settings those flags give."""
    import shlex

    from trainers.config import TrainConfig

    arch, sep, text = item.partition("=")
    if not sep or not arch:
        raise UserError(f"--per-arch takes ARCH=FLAGS (e.g. mott=\"--lr 1e-3\"), got {item!r}")
    parser = _Parser(prog=f"interp study --per-arch {arch}")
    flags.add_arguments(parser, TrainConfig, exclude=STUDY_EXCLUDED)
    return arch, _train_settings(parser.parse_args(shlex.split(text)))


def cmd_findings(args: argparse.Namespace) -> None:
    from analyses.findings import as_text, run_findings, write_findings
    from analyses.study import study_findings
    from interp.runs import Run

    if (Path(args.path) / "study.json").is_file():
        found, where = study_findings(Path(args.path)), Path(args.path) / "findings.json"
    else:
        run = Run.open(args.path, analysis=args.out, env=args.env, steps_from=args.steps_from)
        found, where = run_findings(run), run.findings_path
    if where.parent.is_dir():
        write_findings(where, found)
    print(as_text(found))


def cmd_quickstart(args: argparse.Namespace) -> None:
    from analyses.quickstart import quickstart

    if args.seed < 0:
        raise UserError(f"the seed must be >= 0, not {args.seed}")
    report = quickstart(check_writable(args.out, folder=True), seed=args.seed)
    print(f"report: {report.resolve()}")
    print(f"runs, analyses and videos: {Path(args.out).resolve()}/<agent>/ (checkpoints/, analysis/)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _run_arguments(parser: argparse.ArgumentParser, what: str = "run directory (from `interp train`)") -> None:
    parser.add_argument("run_dir", help=what)
    parser.add_argument("--evalset", help="evaluation set (.npz from `interp evalset`; default: the run's own, "
                                          "RUN_DIR/analysis/evalset.npz, built from the final checkpoint if missing)")
    parser.add_argument("--out", help="folder for the analysis (default: RUN_DIR/analysis)")
    _foreign_arguments(parser)
    parser.add_argument("--workers", type=_positive, help="worker processes (default: one per core)")
    _device_argument(parser)
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="checkpoint jobs in local processes (default) or as Ray tasks")
    parser.add_argument("--ray-address", help="with --backend ray: a running Ray cluster (default: $RAY_ADDRESS, "
                                              "else Ray started here)")


def _device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="{auto,cpu,cuda}",
                        help="where the analyses compute: auto takes a GPU when torch sees one (default: auto; also "
                             "cuda:N); results equal the CPU's within float tolerance and share its cache")


def _foreign_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="the environment, for checkpoints that do not name it (a folder of another "
                                      "library's checkpoints, or one checkpoint file)")
    parser.add_argument("--steps-from", metavar="REGEX",
                        help="a folder of another library's checkpoints: where the step is in a file name, a regular "
                             "expression with one group (default: the library's naming, e.g. rl_model_(\\d+)_steps)")


def _add_train(commands) -> None:
    from interp.agents import AGENTS
    from trainers.config import TrainConfig

    train = commands.add_parser(
        "train", help="train an agent with IMPALA / V-trace, writing checkpoints across training",
        description="Train an agent with IMPALA / V-trace. Actor processes step batches of environments with "
                    "batched inference; the learner applies V-trace and writes RUN_DIR/config.json, "
                    "RUN_DIR/checkpoints/step_<12 digits>.pt (at step 0, log-spaced early, every --checkpoint-every "
                    "steps and at the end), RUN_DIR/metrics.csv and TensorBoard events. Ctrl-C (or SIGTERM) writes a "
                    "final checkpoint and exits cleanly; --resume continues. Defaults by environment, where a flag "
                    "does not say otherwise: an ALE game gets what learns ALE Pong here (--preset pong: IMPALA's "
                    "RMSProp with epsilon 1e-5, frames divided by 255, orthogonal initialisation), MiniPong torch's "
                    "RMSprop; a --preset sets its own values over them.",
        epilog="example: interp train --arch baseline --env MiniPong-v0 --steps 500000 --out runs/baseline   |   "
               "ALE Pong: interp train --arch baseline --preset pong --steps 5000000 --out runs/pong   |   "
               "actors on Ray: ... --backend ray [--ray-address HEAD_IP:6379]")
    train.add_argument("--arch", choices=list(AGENTS), metavar="ARCH", help=f"architecture: {', '.join(AGENTS)}")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out (steps, optimizer, RNG); only the settings of the machine may "
                            "change: " + ", ".join(f"--{n.replace('_', '-')}" for n in TrainConfig.resumable()))
    flags.add_arguments(train, TrainConfig)
    train.set_defaults(run=cmd_train)


def _add_study(commands) -> None:
    from analyses.study import StudyOptions
    from trainers.config import TrainConfig

    study = commands.add_parser(
        "study", help="train and analyse a grid of agents and seeds, compared with confidence intervals",
        description="Train every architecture of --archs with --seeds seeds into OUT/runs/<arch>-s<seed>/ (one "
                    "`interp train` each, with the training flags below for all and --per-arch for one), analyse "
                    "each as `interp analyse` does, and write OUT/study.csv (a row per run: parameters, steps, hours, "
                    "steps/s, inference ms, greedy/sampled/random returns of the final checkpoint, AUC, first step "
                    "at the threshold), OUT/summary.csv (per architecture the mean and 95% interval over seeds) and "
                    "OUT/report.html. Run again, it continues: finished runs and analyses are reused, an "
                    "interrupted run resumes, new architectures or seeds train alone. Ctrl-C stops cleanly.",
        epilog="example: interp study --archs baseline,mott --seeds 3 --env MiniPong-v0 --steps 500000 --out "
               "runs/study   |   per architecture: --per-arch 'mott=--lr 1e-3'   |   on Ray: --backend ray "
               "--ray-address HEAD_IP:6379 --cpus-per-run 4")
    study.add_argument("--out", required=True, help="the study's folder")
    flags.add_arguments(study, StudyOptions, required=("archs",))
    study.add_argument("--per-arch", action="append", metavar="ARCH=FLAGS",
                       help="training flags for one architecture's runs, e.g. mott=\"--lr 1e-3\" (repeatable)")
    study.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="runs one after the other here (default), or each a Ray task with its own CPUs")
    study.add_argument("--ray-address", help="with --backend ray: a running cluster (default: $RAY_ADDRESS, else "
                                             "Ray started here)")
    study.add_argument("--cpus-per-run", type=int, default=2,
                       help="with --backend ray: CPUs of each run's task, its actors and analysis workers among them "
                            "(default: 2)")
    study.add_argument("--gpus-per-run", type=float, default=0, help="with --backend ray: GPUs of each run's task "
                                                                      "(its learner then trains on one; default: 0)")
    group = study.add_argument_group("training (every run; interp train's flags)")
    flags.add_arguments(group, TrainConfig, exclude=STUDY_EXCLUDED)
    study.set_defaults(run=cmd_study)


def _add_stages(commands) -> None:
    from analyses import ALIASES, STAGES

    for name, stage in STAGES.items():
        aliases = [alias for alias, target in ALIASES.items() if target == name]
        parser = commands.add_parser(name, aliases=aliases, help=stage.summary, description=stage.description,
                                     epilog=f"example: interp {name} runs/mott")
        _run_arguments(parser, "run directory (from `interp train`)" if not stage.on_a_checkpoint
                       else "run directory, or one checkpoint file (then --out is the output)")
        if name == "video":
            parser.add_argument("--env-option", action="append", metavar="KEY=VALUE", help="environment option")
            parser.add_argument("--png-every", type=int, default=0, help="with a checkpoint file: also write every "
                                                                         "K-th frame as PNG (default: none)")
        flags.add_arguments(parser, stage.options)
        parser.set_defaults(run=cmd_stage, stage=name)


class _Parser(argparse.ArgumentParser):
    """Bad flags are one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="interp",
        description="Train attention-based Atari agents and analyse them: attention, saliency, LRP, ATOM.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_basics, _add_train, _add_study, _add_evalset, _add_stages, _add_analyse, _add_report,
                _add_findings):
        add(commands)
    return parser


def _add_basics(commands) -> None:
    quick = commands.add_parser(
        "quickstart", help="the whole mission on MiniPong in minutes: train two agents, analyse, report",
        description="Train the baseline (84x84 frames) and a TimeSformer attention agent (42x42 frames) on "
                    "MiniPong-v0 with checkpoints across training, build an evaluation set per agent, run attention "
                    "maps, perturbation, gradient and LRP saliency, ATOM, agreement and sanity checks over every "
                    "checkpoint, render an overlay video per agent and write DIR/report.html comparing them. Run "
                    "again on the same folder, it reuses what is finished.",
        epilog="example: interp quickstart --out runs/quickstart")
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
        epilog="example: interp demo --out runs/demo --env MiniPong-TwoBall-v0 --steps 300")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--env", action="append", help="environment id, repeatable (default: MiniPong-v0 and "
                                                     "ALE/Pong-v5)")
    demo.add_argument("--steps", type=int, default=300, help="steps per environment (default: 300)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=cmd_demo)


def _add_evalset(commands) -> None:
    evalset = commands.add_parser(
        "evalset", help="build a fixed evaluation set of frames with object masks and history",
        description="Play a reference policy (a checkpoint, or a run directory's final checkpoint) and keep frames "
                    "in which every object is present and no two overlap, each with the steps before it, so that "
                    "every checkpoint builds its own state on the same history.",
        epilog="example: interp evalset runs/baseline --env MiniPong-v0 --frames 150 --out runs/eval.npz")
    evalset.add_argument("source", help="checkpoint file or run directory")
    evalset.add_argument("--env", required=True, help="environment id")
    evalset.add_argument("--frames", type=int, default=150, help="frames to keep (default: 150)")
    evalset.add_argument("--out", required=True, help="output .npz file")
    evalset.add_argument("--context", type=int, default=32, help="history steps kept per frame (default: 32)")
    evalset.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    evalset.add_argument("--env-option", action="append", metavar="KEY=VALUE", help="environment option")
    evalset.set_defaults(run=cmd_evalset)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def _add_analyse(commands) -> None:
    from analyses import STAGES

    analyse = commands.add_parser(
        "analyse", help=f"everything for a run: the evaluation set, then {', '.join(STAGES)}",
        description="Build the evaluation set when none is given (RUN_DIR/analysis/evalset.npz, from the final "
                    "checkpoint), then run every analysis stage that applies to the run's agent ("
                    + "; ".join(f"{name}: {stage.summary}" for name, stage in STAGES.items())
                    + ") over the checkpoints in worker processes (or Ray tasks), reusing results already on disk.",
        epilog="example: interp analyse runs/mott   |   on a Ray cluster: interp analyse runs/mott --backend ray "
               "--ray-address HEAD_IP:6379")
    _run_arguments(analyse)
    analyse.add_argument("--stages", type=_names, metavar="NAME,...",
                         help=f"the stages to run (default: every one that applies: {', '.join(STAGES)})")
    analyse.add_argument("--frames", type=_positive,
                         help="frames of the evaluation set; another number than the run's builds a new one "
                              "(default: the run's, 150 for a new one)")
    analyse.add_argument("--episodes", type=int, default=20,
                         help="whole episodes the final checkpoint plays per policy (default: 20)")
    analyse.add_argument("--seed", type=int, default=0,
                         help="seed of those episodes and of a new evaluation set (default: 0)")
    analyse.set_defaults(run=cmd_analyse)


def _add_findings(commands) -> None:
    findings = commands.add_parser(
        "findings", help="what a run's (or a study's) analyses found, in sentences with their numbers",
        description="Print the findings computed from the tables of a run (or of a study folder): whether the agent "
                    "learned (final greedy and sampled returns against random, with a test), when its return first "
                    "reached the game's threshold, when each object's ATOM share changed most against the return, "
                    "which attention heads beat chance against which saliency method, which maps fail the sanity "
                    "check, and the caveats; also written to ANALYSIS/findings.json (STUDY/findings.json).",
        epilog="example: interp findings runs/quickstart/baseline   |   a study: interp findings runs/study")
    findings.add_argument("path", metavar="RUN_DIR", help="run directory, or the folder of `interp study`")
    findings.add_argument("--out", help="the run's analysis folder (default: RUN_DIR/analysis)")
    _foreign_arguments(findings)
    findings.set_defaults(run=cmd_findings)


def _add_report(commands) -> None:
    report = commands.add_parser(
        "report", help="a self-contained HTML page for a run, or comparing runs",
        description="Write one HTML file with everything embedded: configuration and parameter counts, training "
                    "curves, ATOM trajectories, agreement with chance levels, sanity checks, attention stills, the "
                    "overlay video, and the numbers behind every plot as downloadable CSV. Stills and a video of "
                    "the final checkpoint are rendered first when missing; sections whose analysis has not run yet "
                    "say which command produces them (`interp analyse` runs them all).",
        epilog="example: interp report runs/baseline runs/mott --out runs/comparison.html")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    report.add_argument("--out", help="output .html (default: RUN_DIR/report.html for one run)")
    report.add_argument("--evalset", help="evaluation set for the stills (default: RUN_DIR/analysis/evalset.npz)")
    _foreign_arguments(report)
    _device_argument(report)
    report.add_argument("--video-frames", type=int, default=60,
                        help="steps of an overlay video rendered when a run has none (default: 60; 0: none)")
    report.set_defaults(run=cmd_report)


def main(argv: list[str] | None = None) -> int:
    _short_openmp_spin()  # building the parser loads torch
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a bad flag (one line already on stderr)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        args.run(args)
    except (UserError, FileNotFoundError) as error:
        if args.debug:
            raise
        print(f"interp {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file system that fails mid-way (full, gone read-only): one line, not a traceback
        if args.debug:
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"interp {args.command}: error: cannot write{where}: {error.strerror or error}", file=sys.stderr)
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

