"""`interp study`: a grid of agents and seeds, trained and analysed into one folder, resumable, locally or on a
two-node Ray cluster."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_stages import make_run

from analyses.study import (
    COLUMNS,
    FIGURES,
    StudyOptions,
    iqm_with_ci,
    run_study,
    study_findings,
    summarise,
    t_interval,
)
from analyses.study_report import learning_curves
from cli import main
from interp.errors import UserError

# in-process actors (--actors 0): a run is exactly reproducible from its seed, so studies can be compared row by row
TRAIN = {"env": "MiniPong-v0", "steps": 600, "frame_size": 42, "actors": 0, "envs_per_actor": 4, "batch_size": 8,
         "unroll": 10, "checkpoint_every": 300, "first_checkpoint": 300, "env_options": {"points": 1}}
SMALL_TIMESFORMER = {"timesformer_divided": {"agent": {"patch_embedding": "conv", "embed_dim": 8, "mem_len": 2}}}
OPTIONS = dict(archs=("baseline", "timesformer_divided"), seeds=1, train=TRAIN, per_arch=SMALL_TIMESFORMER,
               episodes=2, frames=4, stages=("maps", "atom", "agreement", "evaluation"))
EXACT = [c for c in COLUMNS if c not in ("hours", "steps_per_s", "inference_ms")]  # not timings


def checkpoint_times(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoints/*.pt")}


def test_a_study_trains_analyses_and_compares_its_grid_and_continues_where_it_is(tmp_path):
    out = tmp_path / "study"
    lines = []
    table = run_study(StudyOptions(**OPTIONS), out, log=lines.append)
    assert list(table.columns) == COLUMNS and len(table) == 2
    assert table[["arch", "seed"]].values.tolist() == [["baseline", 0], ["timesformer_divided", 0]]
    assert (table.steps >= 600).all() and (table.params > 0).all() and (table.inference_ms > 0).all()
    assert table[["greedy_return", "sampled_return", "random_return", "auc"]].notna().all().all()
    assert table.threshold.eq(0.0).all()  # MiniPong-v0's default
    assert pd.read_csv(out / "study.csv").shape == (2, len(COLUMNS))
    assert len(pd.read_csv(out / "summary.csv")) == 2 * len(FIGURES)
    page = (out / "report.html").read_text()
    for section in ("learning", "table", "atom", "agreement", "sanity", "data"):
        assert f'id="{section}"' in page
    assert "patch_embedding" in page  # the settings each architecture ran with
    assert {p.name for p in (out / "figures").iterdir()} >= {"learning.png", "atom.png", "agreement.png"}
    assert any("[2/2] timesformer_divided-s0" in line for line in lines)

    trained = checkpoint_times(out)
    again = run_study(StudyOptions(**OPTIONS), out, log=lines.append)  # nothing left to train
    assert checkpoint_times(out) == trained and again[EXACT].equals(table[EXACT])
    grown = run_study(StudyOptions(**{**OPTIONS, "seeds": 2}), out, log=lines.append)  # a seed more
    new = {p for p in checkpoint_times(out) if p not in trained}
    assert len(grown) == 4 and new and {p.parts[-3] for p in new} == {"baseline-s1", "timesformer_divided-s1"}
    summary = pd.read_csv(out / "summary.csv")
    params = summary[summary.figure == "params"].set_index("arch")
    assert (params.seeds == 2).all() and (params.ci_low == params["mean"]).all()  # the same in every seed
    before = checkpoint_times(out)
    existing = run_study(StudyOptions(**{**OPTIONS, "seeds": 5, "existing_only": True}), out, log=lines.append)
    assert len(existing) == 4 and checkpoint_times(out) == before  # the runs there, nothing trained


def test_a_killed_study_resumes_its_interrupted_run(tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "cli", "study", "--archs", "baseline", "--seeds", "2", "--out", str(out),
               "--steps", "6000", "--actors", "0", "--envs-per-actor", "4", "--batch-size", "8", "--unroll", "10",
               "--checkpoint-every", "1000", "--first-checkpoint", "1000", "--episodes", "2", "--frames", "4",
               "--stages", "evaluation", "--env-option", "points=1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    second = out / "runs" / "baseline-s1" / "checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(second.glob("step_*.pt"))) < 2:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # mid-way through the second run
    process.wait()
    assert len(list(second.glob("step_*.pt"))) >= 2 and not (out / "study.csv").exists()
    assert main(command[3:]) == 0
    table = pd.read_csv(out / "study.csv")
    assert len(table) == 2 and (table.steps >= 6000).all()
    steps = pd.read_csv(out / "runs" / "baseline-s1" / "metrics.csv").step
    assert steps.is_monotonic_increasing and steps.is_unique  # resumed, not restarted or logged twice


def test_ctrl_c_stops_a_study_cleanly(tmp_path):
    out = tmp_path / "study"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "study", "--archs", "baseline", "--seeds", "1", "--out", str(out),
         "--steps", "10000000", "--actors", "0", "--envs-per-actor", "4", "--batch-size", "8", "--unroll", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "runs" / "baseline-s0" / "metrics.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in error and "Traceback" not in error
    finals = sorted((out / "runs" / "baseline-s0" / "checkpoints").glob("step_*.pt"))
    assert int(finals[-1].stem.split("_")[1]) > 0  # the trainer's final checkpoint


def test_bad_study_settings_are_one_line_errors(tmp_path, capsys):
    for arguments, message in (
            (["--archs", "nope"], "unknown or not in --archs: nope"),
            (["--archs", "baseline", "--per-arch", "mott=--lr 1e-3"], "not in --archs: mott"),
            (["--archs", "baseline", "--per-arch", "baseline"], "--per-arch takes ARCH=FLAGS"),
            (["--archs", "baseline", "--seeds", "0"], "seeds, episodes and frames must be >= 1"),
            (["--archs", "baseline", "--stages", "maps,bogus"], "unknown analysis stage"),
            (["--archs", "baseline", "--cpus-per-run", "0"], "--cpus-per-run must be >= 1")):
        assert main(["study", "--out", str(tmp_path / "s"), *arguments]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    with pytest.raises(UserError, match="the threshold must be a finite return"):
        StudyOptions(archs=("baseline",), threshold=float("inf"))


def test_intervals_across_seeds():
    low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    assert low == pytest.approx(2 - 4.302653 / np.sqrt(3)) and high == pytest.approx(2 + 4.302653 / np.sqrt(3))
    assert np.isnan(t_interval(np.array([1.0]))).all()
    iqm, low, high = iqm_with_ci(np.array([0.0, 1.0, 2.0, 3.0, 100.0]))
    assert iqm == pytest.approx(2.0) and low <= iqm <= high  # the outlier trimmed away
    assert iqm_with_ci(np.array([5.0, 5.0])) == (5.0, 5.0, 5.0)


@pytest.fixture
def two_node_cluster(tmp_path):
    """A real Ray cluster of two nodes on this machine, two CPUs each (`ray start` twice)."""
    ray_cli = Path(sys.executable).with_name("ray")
    environment = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port = "6391"
    common = ["--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    subprocess.run([ray_cli, "start", "--head", "--port", port, "--include-dashboard", "false", *common],
                   check=True, env=environment, capture_output=True, timeout=180)
    try:
        subprocess.run([ray_cli, "start", "--address", f"127.0.0.1:{port}", *common], check=True, env=environment,
                       capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=environment, capture_output=True, timeout=180)


def test_on_a_two_node_ray_cluster_runs_land_on_both_nodes_with_the_local_outputs(tmp_path, two_node_cluster):
    options = StudyOptions(**{**OPTIONS, "archs": ("baseline",), "per_arch": {}, "seeds": 2})
    local = run_study(options, tmp_path / "local", log=lambda line: None)
    on_ray = run_study(options, tmp_path / "ray", backend="ray", ray_address=two_node_cluster, cpus_per_run=2,
                       log=lambda line: None)
    nodes = {(tmp_path / "ray" / "runs" / f"baseline-s{seed}" / "analysis" / "node.txt").read_text()
             for seed in (0, 1)}
    assert len(nodes) == 2  # one run per node: each task takes both CPUs of a node
    pd.testing.assert_frame_equal(on_ray[EXACT], local[EXACT])
    for name in ("atom.csv", "evaluation.csv"):
        ours = pd.read_csv(tmp_path / "ray" / "runs" / "baseline-s1" / "analysis" / name)
        theirs = pd.read_csv(tmp_path / "local" / "runs" / "baseline-s1" / "analysis" / name)
        pd.testing.assert_frame_equal(ours, theirs)


def test_a_run_without_an_evaluation_is_named_not_averaged_as_nan(tmp_path):
    nan = float("nan")
    pd.DataFrame({"arch": ["mott", "mott"], "seed": [0, 1], "steps": [525120, 10240], "greedy_return": [nan, nan],
                  "random_return": [nan, nan], "first_step_at": [nan, nan], "threshold": [18.0, 18.0]}
                 ).to_csv(tmp_path / "study.csv", index=False)
    found = study_findings(tmp_path)
    texts = [finding.text for finding in found]
    assert texts[0] == ("mott: 2 run(s) without an evaluation of the final checkpoint (seed 0 at 525,120 steps, "
                        "seed 1 at 10,240 steps): left out of its learning figures.")
    assert found[0].warning and not any("nan" in text for text in texts)


def test_a_run_still_training_is_left_out_of_the_learning_curves(tmp_path):
    """The findings say a run without an evaluation is left out of the learning figures: it is, instead of its last
    training return being carried on to the grid's end."""
    for name, returns in (("baseline-s0", [-5.0, -1.0]), ("mott-s0", [-5.0, -4.0])):
        run = make_run(tmp_path / "runs" / name, steps=(0,))
        pd.DataFrame({"step": [500, 1000], "wall_time": [1.0, 2.0], "episodes_ended": [1, 1],
                      "mean_return": returns}).to_csv(run / "metrics.csv", index=False)
    table = pd.DataFrame({"arch": ["baseline", "mott"], "seed": [0, 0], "greedy_return": [1.0, float("nan")]})
    curves = learning_curves(tmp_path, table)
    assert set(curves.arch) == {"baseline"} and curves.iqm.iloc[-1] == -1.0
    evaluated = learning_curves(tmp_path, table.fillna(0.0))
    assert set(evaluated.arch) == {"baseline", "mott"}


def test_a_run_still_training_is_left_out_of_the_summary():
    """A finished run and one still training (no evaluation yet): the summary is the finished run's, not a mean of
    5M and 0.86M steps; an architecture with no run evaluated keeps its rows with 0 seeds."""
    nan = float("nan")
    table = pd.DataFrame({"arch": ["timesformer_divided", "timesformer_divided", "spatiotemporal"], "seed": [0, 1, 0],
                          "steps": [5_000_000, 862_080, 2_226_240], "greedy_return": [19.4, nan, nan]})
    table = table.reindex(columns=COLUMNS)
    summary = summarise(table).set_index(["arch", "figure"])
    assert summary.loc[("timesformer_divided", "steps"), "seeds"] == 1
    assert summary.loc[("timesformer_divided", "steps"), "mean"] == 5_000_000
    assert summary.loc[("spatiotemporal", "steps"), "seeds"] == 0
    assert np.isnan(summary.loc[("spatiotemporal", "steps"), "mean"])
