"""Findings computed from a run's tables: each verdict follows its test, each number its table."""

import json

import numpy as np
import pandas as pd
import pytest
from test_stages import make_run

from analyses.findings import change_point, run_findings
from cli import main
from interp.runs import Run

STEPS = [0, 500, 1000, 1500, 2000, 2500]


def write(run_dir, name: str, rows: list[dict]) -> None:
    folder = run_dir if name == "metrics.csv" else run_dir / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / name, index=False)


def evaluation(greedy: float, spread: float = 0.5) -> list[dict]:
    return [{"step": 2500, "policy": policy, "episodes": 20, "seed": 0, "mean_return": mean, "std_return": spread}
            for policy, mean in (("greedy", greedy), ("sampled", greedy - 0.5), ("random", -4.2))]


def atom_rows(player_jump_at: int, return_jump_at: int) -> list[dict]:
    rows = []
    for step in STEPS:
        player = 0.6 if step >= player_jump_at else 0.2
        for name, share in (("player", player), ("ball", 0.8 - player), ("enemy", 0.2)):
            rows.append({"step": step, "method": "atom", "metric": "hierarchical_share", "object": name,
                         "value": share / 1.2})
        rows += [{"step": step, "method": "atom", "metric": metric, "object": "", "value": value}
                 for metric, value in (("frames", 10), ("empty_selection", 1 if step == 0 else 0),
                                       ("relevance_at_pixels", 0.9))]
        rows += [{"step": step, "method": "atom", "metric": "output_spread", "object": o, "value": 0.1}
                 for o in ("policy", "value")]
        rows.append({"step": step, "method": "training", "metric": "mean_return", "object": "",
                     "value": 3.0 if step >= return_jump_at else -4.0})
    return rows


def agreement_rows(better: float) -> list[dict]:
    return [{"step": step, "head": f"space.hook_weights/h{h}", "method": method, "target": "actor",
             "metric": "spearman", "value": 0.3 if better > 0.5 else 0.0, "chance": 0.0, "better": better}
            for step in STEPS for h in range(2) for method in ("gradient", "lrp")]


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run", steps=STEPS)


def test_a_run_that_learned_says_so_with_its_test_and_threshold(run):
    write(run, "evaluation.csv", evaluation(greedy=3.0))
    write(run, "metrics.csv", [{"step": s, "episodes_ended": 40, "mean_return": r}
                               for s, r in ((500, -4.0), (1000, -2.0), (1500, 0.5), (2000, 2.0))])
    found = run_findings(Run.open(run))
    learned = found[0]
    assert learned.text.startswith("Learned") and not learned.warning and learned.numbers["p"] < 1e-6
    assert learned.figure == "training-run"
    first = found[1]
    assert "first reached 0 at step 1,500" in first.text  # 100 episodes ended by step 1,000; 0.5 >= 0 at 1,500


def test_a_run_that_did_not_learn_gets_the_warning(run):
    write(run, "evaluation.csv", evaluation(greedy=-4.0, spread=1.0))
    found = run_findings(Run.open(run))
    assert found[0].warning and found[0].text.startswith("Did not learn") and not found[0].numbers["learned"]


def test_atom_change_points_are_placed_against_the_return(run):
    write(run, "atom.csv", atom_rows(player_jump_at=2000, return_jump_at=2000))
    (found,) = [f for f in run_findings(Run.open(run)) if f.topic == "atom"]
    assert "the player's between steps 1,500 and 2,000 (0.17 -> 0.50) with the return's" in found.text
    assert "the enemy's" in found.text and "At the final checkpoint the player leads with 0.50" in found.text
    write(run, "atom.csv", atom_rows(player_jump_at=1000, return_jump_at=2000))
    (found,) = [f for f in run_findings(Run.open(run)) if f.topic == "atom"]
    assert "the player's between steps 500 and 1,000 (0.17 -> 0.50) before the return's" in found.text
    caveats = " ".join(f.text for f in run_findings(Run.open(run)) if f.topic == "caveat")
    assert "1 of 60 evaluation frames over all checkpoints had no ATOM selection" in caveats
    assert "One run (seed 0)" in caveats


def test_change_point_is_the_least_squares_split():
    assert change_point(pd.Series([0.0, 0.1, 0.0, 1.0, 1.1])) == (3, pytest.approx(1 / 30), pytest.approx(1.05))
    assert change_point(pd.Series([1.0, 2.0])) is None


@pytest.mark.parametrize(("better", "above"), [(0.9, 4), (0.5, 0)])
def test_agreement_above_chance_is_a_sign_test_over_checkpoints_and_frames(run, better, above):
    write(run, "atom.csv", atom_rows(1000, 1000))  # 10 frames per checkpoint
    write(run, "agreement.csv", agreement_rows(better))
    (found,) = [f for f in run_findings(Run.open(run)) if f.topic == "agreement"]
    assert found.numbers["above"] == above and found.numbers["pairs"] == 4
    assert f"{above} of 4 head-method pairs beat chance over all 6 checkpoints x 10 frames" in found.text
    assert found.warning == (above == 0)


def test_maps_failing_the_sanity_check_are_a_warning(run):
    write(run, "sanity_flags.csv", [{"map": "perturbation/actor", "reason": "..."}])
    (found,) = [f for f in run_findings(Run.open(run)) if f.topic == "sanity"]
    assert found.warning and "perturbation/actor" in found.text


def test_interp_findings_prints_and_writes_them(run, capsys):
    write(run, "evaluation.csv", evaluation(greedy=3.0))
    assert main(["findings", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "[learning] Learned" in printed
    saved = json.loads((run / "analysis" / "findings.json").read_text())
    assert saved[0]["topic"] == "learning" and np.isclose(saved[0]["numbers"]["greedy"], 3.0)
