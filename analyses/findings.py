"""What a run's tables say, in sentences with their numbers, uncertainty and the figure behind each.

Computed from the files the stages wrote (``metrics.csv``, ``evaluation.csv``, ``atom.csv``, ``agreement.csv``,
``sanity_flags.csv``), never by hand; a table that is missing gives no finding (and a caveat says so). Each
:class:`Finding` is one sentence; ``figure`` is the id of the report's part that shows it. The tests:

- learning: the final checkpoint's greedy episodes against the random policy's, Welch's t-test (one-sided, from the
  two samples' means and standard deviations); ``did not learn`` when it is not above random at the 5% level;
- ATOM: for each object's share of hierarchical attention, and for the training return, the least-squares single
  change point (the step that splits the series into two constant segments with the smallest squared error); an
  object's change is *with* the return's when both fall between the same two checkpoints, else before or after;
- agreement: per attention head and saliency method (actor, Spearman over pixels), a one-sided sign test over every
  (checkpoint, frame) pair of whether the Spearman correlation beats its chance level (the attention's pixels
  shuffled), Bonferroni-corrected over the pairs tested; checkpoints whose network does not depend on the frame are
  left out;
- sanity: the maps that keep Spearman > 0.5 to the trained model's with every layer randomised.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analyses.atom import frame_independent_steps
from interp.files import atomic_path
from interp.runs import Run

THRESHOLDS = {"ALE/Pong-": 18.0, "MiniPong-v0": 0.0, "MiniPong-TwoBall-v0": 0.0}
"""environment id prefix -> the training return that means the game is learned (first reached at which step)"""
ALPHA = 0.05


@dataclass(frozen=True)
class Finding:
    topic: str
    """learning, atom, agreement, sanity or caveat"""
    text: str
    figure: str = ""
    """the id of the report's part that shows it"""
    warning: bool = False
    """something the reader must not miss (an agent that did not learn, a map that follows the image)"""
    numbers: dict = field(default_factory=dict)


def threshold_for(env: str) -> float | None:
    return next((value for prefix, value in THRESHOLDS.items() if env.startswith(prefix)), None)


def run_findings(run: Run) -> list[Finding]:
    """Every finding of one run, learning first, caveats last."""
    anchor = f"-{run.name}"
    found = learning(run, anchor) + atom(run, anchor) + agreement(run, anchor) + sanity(run, anchor)
    return found + caveats(run, found)


# ---- learning ----


def learning(run: Run, anchor: str = "") -> list[Finding]:
    found = []
    evaluation = run.read_table("evaluation.csv", ("policy", "episodes", "mean_return", "std_return"))
    if evaluation is not None:
        found.append(_evaluated(evaluation.set_index("policy"), anchor))
    metrics = run.read_table("metrics.csv", ("step", "episodes_ended", "mean_return"))
    threshold = threshold_for(run.environment.id)
    if metrics is not None and threshold is not None and metrics.mean_return.notna().any():
        found.append(_first_at(metrics, threshold, anchor))
    table = run.read_table("atom.csv", ("step", "method", "metric", "object", "value"))
    if table is not None and run.final in frame_independent_steps(table):
        found.append(Finding("learning", "The final checkpoint's output does not depend on the frame (no relevance "
                             "reaches its pixels, or its outputs are the same on every evaluation frame): a dead "
                             "first layer, say. Its maps and ATOM shares say nothing about the game.",
                             f"atom{anchor}", warning=True))
    return found


def _evaluated(table: pd.DataFrame, anchor: str) -> Finding:
    greedy, sampled, random = (table.loc[p] for p in ("greedy", "sampled", "random"))
    test = stats.ttest_ind_from_stats(greedy.mean_return, greedy.std_return, greedy.episodes, random.mean_return,
                                      random.std_return, random.episodes, equal_var=False, alternative="greater")
    p = float(test.pvalue) if np.isfinite(test.pvalue) else float(greedy.mean_return <= random.mean_return)
    learned = p < ALPHA and greedy.mean_return > random.mean_return
    scores = (f"greedy {greedy.mean_return:+.2f} ± {greedy.std_return:.2f} and sampled {sampled.mean_return:+.2f} ± "
              f"{sampled.std_return:.2f} over {int(greedy.episodes)} episodes, against {random.mean_return:+.2f} ± "
              f"{random.std_return:.2f} for a random policy")
    verdict = ("Learned: the final checkpoint scores " if learned else
               "Did not learn: the final checkpoint is no better than a random policy: ")
    return Finding("learning", f"{verdict}{scores} (greedy above random: Welch's t-test, one-sided, {_p(p)}).",
                   f"training{anchor}", warning=not learned,
                   numbers={"greedy": greedy.mean_return, "sampled": sampled.mean_return,
                            "random": random.mean_return, "p": p, "learned": bool(learned)})


def _first_at(metrics: pd.DataFrame, threshold: float, anchor: str) -> Finding:
    full = metrics[metrics.episodes_ended.cumsum() >= 100]
    reached = full[full.mean_return >= threshold]
    last = int(metrics.step.iloc[-1])
    if len(reached):
        step = int(reached.step.iloc[0])
        text = (f"The mean of the last 100 training returns first reached {threshold:g} at step {step:,} "
                f"({step / last:.0%} of the {last:,} steps).")
    else:
        best = metrics.loc[metrics.mean_return.idxmax()]
        step = None
        text = (f"The mean of the last 100 training returns never reached {threshold:g} in {last:,} steps (its best: "
                f"{best.mean_return:+.2f} at step {int(best.step):,}).")
    return Finding("learning", text, f"training{anchor}", numbers={"threshold": threshold, "step": step})


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---- ATOM ----


def change_point(series: pd.Series) -> tuple[int, float, float] | None:
    """The least-squares single change point of a series indexed by step: ``(index position, mean before, mean
    after)`` of the split into two constant segments with the smallest squared error; None under 3 values."""
    values = series.to_numpy(float)
    if len(values) < 3 or np.isnan(values).any():
        return None
    costs = [((values[:k] - values[:k].mean()) ** 2).sum() + ((values[k:] - values[k:].mean()) ** 2).sum()
             for k in range(1, len(values))]
    k = int(np.argmin(costs)) + 1
    return k, float(values[:k].mean()), float(values[k:].mean())


def atom(run: Run, anchor: str = "") -> list[Finding]:
    table = run.read_table("atom.csv", ("step", "method", "metric", "object", "value"))
    if table is None:
        return []
    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    shares = shares.pivot(index="step", columns="object", values="value")
    shares = shares.drop(index=[s for s in frame_independent_steps(table) if s in shares.index]).dropna()
    returns = table[(table.method == "training") & (table.metric == "mean_return")].set_index("step")["value"]
    returns = returns.dropna().sort_index()
    if len(shares) < 3:
        return []
    steps = shares.index.to_list()
    returned = change_point(returns)
    interval = None if returned is None else (returns.index[returned[0] - 1], returns.index[returned[0]])
    parts = []
    for name in shares.columns:
        k, before, after = change_point(shares[name])
        when = "" if interval is None else " " + _relation((steps[k - 1], steps[k]), interval) + " the return's"
        parts.append(f"the {name}'s between steps {steps[k - 1]:,} and {steps[k]:,} ({before:.2f} -> {after:.2f}"
                     f"){when}")
    return_text = ("" if interval is None else f" The training return changed most between steps {interval[0]:,} "
                   f"and {interval[1]:,} ({returned[1]:+.2f} -> {returned[2]:+.2f}).")
    final = shares.iloc[-1].sort_values(ascending=False)
    leader = (f" At the final checkpoint the {final.index[0]} leads with {final.iloc[0]:.2f} of the relevance on "
              f"objects (then {', '.join(f'{k} {v:.2f}' for k, v in final.iloc[1:].items())}).")
    text = ("ATOM shares changed most (least-squares single change point): " + "; ".join(parts) + "." + return_text
            + leader)
    return [Finding("atom", text, f"atom{anchor}", numbers={"final": final.round(4).to_dict()})]


def _relation(change: tuple[int, int], other: tuple[int, int]) -> str:
    """Whether a change between two checkpoints came before, with (the intervals overlap) or after another."""
    if change[1] <= other[0]:
        return "before"
    return "after" if change[0] >= other[1] else "with"


# ---- agreement ----


def agreement(run: Run, anchor: str = "", metric: str = "spearman", target: str = "actor") -> list[Finding]:
    table = run.read_table("agreement.csv", ("step", "head", "method", "target", "metric", "value", "chance"))
    if table is None:
        return []
    if "better" not in table.columns:
        return [Finding("caveat", "agreement.csv predates the per-frame counts; run `interp agreement` again for the "
                        "test against chance.", f"agreement{anchor}")]
    frames = _frames(run)
    atom_table = run.read_table("atom.csv")
    dead = set(frame_independent_steps(atom_table)) if atom_table is not None else set()
    rows = table[(table.metric == metric) & (table.target == target) & (table["head"].astype(str) != "")
                 & ~table.step.isin(dead)]
    if rows.empty or not frames:
        return []
    pairs = []
    for (head, method), group in rows.groupby(["head", "method"]):
        wins = int(round((group.better * frames).sum()))
        total = frames * len(group)
        p = float(stats.binomtest(wins, total, 0.5, alternative="greater").pvalue)
        pairs.append((head.replace(".hook_weights", ""), method, float((group.value - group.chance).mean()), p,
                      wins / total))
    tests = len(pairs)
    above = [pair for pair in pairs if pair[3] * tests < ALPHA]
    ordered = sorted(pairs, key=lambda pair: pair[2])
    strongest, weakest = ordered[-1], ordered[0]
    text = (f"Agreement of attention with saliency ({metric}, {target}): {len(above)} of {tests} head-method pairs "
            f"beat chance over all {rows.step.nunique()} checkpoints x {frames} frames (one-sided sign test, "
            f"Bonferroni over {tests} pairs, alpha {ALPHA})" + (": " + ", ".join(f"{h} ~ {m}" for h, m, *_ in above)
                                                                if above else "")
            + f". Strongest: {strongest[0]} ~ {strongest[1]}, {strongest[2]:+.3f} over chance ({strongest[4]:.0%} of "
            f"pairs above); weakest: {weakest[0]} ~ {weakest[1]}, {weakest[2]:+.3f} ({weakest[4]:.0%}).")
    return [Finding("agreement", text, f"agreement{anchor}", warning=not above,
                    numbers={"above": len(above), "pairs": tests, "strongest": list(strongest[:2]),
                             "weakest": list(weakest[:2])})]


def _frames(run: Run) -> int:
    """Frames per checkpoint of the agreement (the evaluation set's), from atom.csv's count where it exists."""
    table = run.read_table("atom.csv")
    if table is not None:
        counts = table[(table.method == "atom") & (table.metric == "frames")]["value"]
        if len(counts):
            return int(counts.iloc[-1])
    evalset = run.evalset_path
    if evalset.exists():
        with np.load(evalset, allow_pickle=False) as data:
            return len(data["obs"])
    return 0


# ---- sanity and caveats ----


def sanity(run: Run, anchor: str = "") -> list[Finding]:
    flags = run.read_table("sanity_flags.csv", ("map",))
    if flags is None:
        return []
    if flags.empty:
        return [Finding("sanity", "Every map passes the randomisation check: each changes once the network's layers "
                        "are randomised, so each depends on what the network learned.", f"sanity{anchor}")]
    maps = ", ".join(flags["map"])
    return [Finding("sanity", f"{len(flags)} map(s) fail the randomisation check ({maps}): with every layer "
                    "randomised they keep a Spearman similarity above 0.5 to the trained model's, so they follow the "
                    "image more than the network, and the agreement and ATOM-profile findings that use them say "
                    "little about what the agent learned.", f"sanity{anchor}", warning=True,
                    numbers={"maps": flags["map"].to_list()})]


def caveats(run: Run, found: list[Finding]) -> list[Finding]:
    notes = []
    table = run.read_table("atom.csv", ("step", "method", "metric", "object", "value"))
    if table is not None:
        counts = table[table.method == "atom"].pivot_table(index="step", columns="metric", values="value",
                                                            aggfunc="first")
        if {"empty_selection", "frames"} <= set(counts.columns) and counts.empty_selection.sum() > 0:
            worst = counts.empty_selection.idxmax()
            notes.append(f"{int(counts.empty_selection.sum())} of {int(counts.frames.sum())} evaluation frames over "
                         f"all checkpoints had no ATOM selection (no positive relevance at F_c) and are left out of "
                         f"the shares (most at step {int(worst):,}: {int(counts.empty_selection[worst])} of "
                         f"{int(counts.frames[worst])}).")
        missing = sorted(set(run.steps) - set(table.step))
        if missing:
            notes.append(f"atom.csv covers {len(run.steps) - len(missing)} of the run's {len(run.steps)} checkpoints "
                         f"(run `interp atom {run.directory}` for the others).")
    seed = run.config.get("seed", 0) if run.config is not None else None
    notes.append(f"One run{'' if seed is None else f' (seed {seed})'}: the spread between seeds is not known here "
                 "(`interp study` runs several).")
    absent = [name for name in ("evaluation.csv", "atom.csv", "sanity_flags.csv") if run.read_table(name) is None]
    if absent:
        notes.append(f"Not analysed yet: {', '.join(absent)} (`interp analyse {run.directory}`).")
    return [Finding("caveat", note) for note in notes]


# ---- on disk and in the terminal ----


def write_findings(path: Path, found: list[Finding]) -> Path:
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps([asdict(f) for f in found], indent=2, default=_plain))
    return path


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def as_text(found: list[Finding]) -> str:
    return "\n".join(f"{'! ' if f.warning else '- '}[{f.topic}] {f.text}" for f in found)
