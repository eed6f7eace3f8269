"""The quick start end to end on a tiny plan (the real one trains for minutes; its figures are in the README)."""

import json
from dataclasses import replace

import pandas as pd

from analyses.quickstart import AGENTS, quickstart


def test_quickstart_trains_analyses_renders_and_reports(tmp_path):
    tiny = tuple(replace(spec, steps=320) for spec in AGENTS)
    lines = []
    report = quickstart(tmp_path / "quick", agents=tiny, frames=3, video_frames=6, log=lines.append)
    assert report == tmp_path / "quick" / "report.html" and report.stat().st_size > 100_000
    page = report.read_text()
    assert "Comparison of baseline, timesformer_divided" in page and "random policy" in page
    assert "final checkpoint, greedy" in page
    for spec in tiny:
        run = tmp_path / "quick" / spec.arch
        assert int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem[5:]) >= 320
        config = json.loads((run / "config.json").read_text())  # the agent's settings reach its trainer
        settings = ("lr", "lr_schedule", "lr_warmup", "frame_size", "unroll")
        assert [config[name] for name in settings] == [getattr(spec, name) for name in settings]
        assert (run / "analysis" / "video.mp4").stat().st_size > 1000
        evaluation = pd.read_csv(run / "analysis" / "evaluation.csv")
        assert evaluation.policy.tolist() == ["greedy", "sampled", "random"] and set(evaluation.episodes) == {10}
        assert any(line.startswith(f"{spec.arch}: final checkpoint's mean return greedy") for line in lines)
        atom = pd.read_csv(run / "analysis" / "atom.csv")
        assert atom.step.nunique() == len(list((run / "checkpoints").glob("step_*.pt")))
    assert (tmp_path / "quick" / "timesformer_divided" / "analysis" / "agreement.csv").exists()
    assert lines[-1].startswith("done in")
    lines.clear()
    quickstart(tmp_path / "quick", agents=tiny, frames=3, video_frames=6, log=lines.append)
    assert not any(line.startswith("training") for line in lines)  # finished runs are not trained again
