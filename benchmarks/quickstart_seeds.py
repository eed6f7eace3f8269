"""Does the quick start learn every time? Its training for several seeds, each agent's final greedy return against
the random policy's, side by side.

    .venv/bin/python benchmarks/quickstart_seeds.py [--seeds 10] [--first-seed 0] [--episodes 10] [--out DIR]
                                                    [--agents baseline,timesformer_divided]

For every seed: the quick start's agents (``--agents``: some of them, by architecture) trained exactly as
``interp quickstart --seed S`` trains them (:data:`analyses.quickstart.AGENTS`, into ``DIR/seed<S>/<arch>``,
resumable), then the final checkpoint plays ``--episodes`` whole episodes greedily and a uniformly random policy the
same episodes. Prints one row per seed (the minutes of training the agents, each agent's greedy return and its
margin over random) and the count of seeds in which every agent is at least ``--margin`` (3.0) above random. Run it
on a quiet machine: the minutes are part of the result.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analyses.evaluation import play
from analyses.quickstart import AGENTS, ENV, train_agent
from interp.runs import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--margin", type=float, default=3.0)
    parser.add_argument("--out", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--agents", default=",".join(a.arch for a in AGENTS),
                        help="the quick start's agents to train, by architecture, comma-separated")
    args = parser.parse_args()
    known, chosen = {a.arch: a for a in AGENTS}, args.agents.split(",")
    if unknown := [arch for arch in chosen if arch not in known]:
        parser.error(f"not a quick-start agent: {', '.join(unknown)} (they are {', '.join(known)})")
    agents = [known[arch] for arch in chosen]
    out = Path(args.out or tempfile.mkdtemp(prefix="quickstart_seeds_"))
    print(f"the quick start's training on {ENV}: {', '.join(f'{a.arch} {a.steps:,} steps' for a in agents)}; "
          f"{args.episodes} greedy and random episodes each; runs in {out}")
    print(f"{'seed':>4} {'minutes':>8} " + " ".join(f"{a.arch + ' greedy (margin)':>34}" for a in agents))
    passed = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        margins, cells, minutes = [], [], 0.0
        for spec in agents:
            start = time.perf_counter()
            run = Run.open(train_agent(spec, out / f"seed{seed}", seed=seed, progress=False, log=lambda line: None))
            minutes += (time.perf_counter() - start) / 60
            options = {"episodes": args.episodes, "seed": seed, **run.environment.options}
            greedy = play(run.agent, ENV, policy="greedy", **options).mean()
            random = play(None, ENV, policy="random", **options).mean()
            margins.append(greedy - random)
            cells.append(f"{greedy:+.2f} ({greedy - random:+.2f})")
        passed += all(margin >= args.margin for margin in margins)
        print(f"{seed:>4} {minutes:>8.1f} " + " ".join(f"{cell:>34}" for cell in cells), flush=True)
    named = "every agent" if len(agents) > 1 else agents[0].arch
    print(f"{named} at least {args.margin} above random in {passed} of {args.seeds} seeds")


if __name__ == "__main__":
    main()
