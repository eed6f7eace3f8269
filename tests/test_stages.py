"""The run model and the stage registry: a run read one way, every stage cached by content, a new analysis is one
module and one registry entry."""

import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import STAGES
from analyses.analyse import analyse_run
from analyses.evaluation import EvaluationOptions
from analyses.stage import Job, Stage, load_result, table_of, write_table
from cli import main
from interp.agents import make_agent, save_checkpoint
from interp.errors import UserError
from interp.evalset import load_evalset, pre_step_state
from interp.runs import Run
from trainers.config import TrainConfig


def make_run(folder: Path, steps=(0, 500, 1000), config: bool = True, arch: str = "baseline",
             agent: dict | None = None) -> Path:
    torch.manual_seed(0)
    for step in steps:
        save_checkpoint(folder / "checkpoints" / f"step_{step:012d}.pt",
                        make_agent(arch, num_actions=3, **(agent or {})), env="MiniPong-v0", step=step)
    if config:
        (folder / "config.json").write_text(TrainConfig(arch=arch, env="MiniPong-v0", agent=agent or {},
                                                        out=str(folder)).to_json())
    return folder


def test_a_run_knows_its_checkpoints_configuration_and_environment(tmp_path):
    run = Run.open(make_run(tmp_path / "run", steps=(1000, 0, 500)))
    assert run.steps == [0, 500, 1000] and run.final == 1000 and run.architecture == "baseline"
    assert run.step_of(run.checkpoint(500)) == 500 and run.checkpoint(500).name == "step_000000000500.pt"
    assert run.config["arch"] == "baseline" and run.config["lr"] == TrainConfig.lr
    assert run.environment.id == "MiniPong-v0"
    assert run.environment.frame_size == 84 and run.read_table("atom.csv") is None
    with pytest.raises(UserError, match="no checkpoint at step 7"):
        run.checkpoint(7)
    bare = Run.open(make_run(tmp_path / "bare", steps=(0,), config=False))  # no config.json: the checkpoint says
    assert bare.config is None and bare.environment.id == "MiniPong-v0"
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserError, match="no checkpoints"):
        Run.open(tmp_path / "bad")
    with pytest.raises(UserError, match="is a file"):
        Run.open(run.checkpoint(0))


def test_stage_results_are_keyed_by_options_checkpoint_contents_and_checksums(tmp_path):
    run = make_run(tmp_path / "run", steps=(0, 500))

    def evaluate(**options):
        analyse_run(run, stages=("evaluation",), options={"evaluation": EvaluationOptions(episodes=2, **options)},
                    progress=False, log=lambda line: None)
        return {p: p.stat().st_mtime_ns for p in (run / "analysis" / "cache").glob("evaluation-*/step_*.csv")}

    first = evaluate()
    assert len(first) == 1 and evaluate() == first  # the final checkpoint only, reused
    assert len(evaluate(seed=3)) == 2  # other options: a result of their own
    cached = next(iter(first))
    cached.write_text(cached.read_text().replace("greedy", "greedy", 1) + "\n")  # edited by hand
    after_edit = evaluate()
    assert after_edit[cached] != first[cached]  # no longer matches its checksum: computed again
    checkpoint = run / "checkpoints" / "step_000000000500.pt"
    save_checkpoint(checkpoint, make_agent("baseline", num_actions=3), env="MiniPong-v0", step=500)  # new weights
    assert set(evaluate()) - set(after_edit)  # the same file name, other contents: another result
    cached.write_bytes(cached.read_bytes()[:10])  # truncated
    assert evaluate()


def test_an_interrupted_stage_computes_only_what_is_missing(tmp_path):
    run = make_run(tmp_path / "run")
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "2", "--context", "1", "--out",
                 str(tmp_path / "eval.npz")]) == 0
    arguments = ["atom", str(run), "--evalset", str(tmp_path / "eval.npz"), "--methods", "gradient"]
    assert main(arguments) == 0
    results = sorted((run / "analysis" / "cache").glob("atom-*/step_*.csv"))
    assert len(results) == 3
    results[1].unlink()  # as if the command had been stopped before the second checkpoint
    stamps = {path: path.stat().st_mtime_ns for path in (results[0], results[2])}
    assert main(arguments) == 0
    assert results[1].exists() and all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    assert sorted(pd.read_csv(run / "analysis" / "atom.csv").step.unique()) == [0, 500, 1000]


def test_pre_step_states_are_replayed_once_per_checkpoint_then_read_by_the_later_stages(tmp_path, monkeypatch):
    from analyses import stage
    from analyses.atom import AtomOptions
    from analyses.maps import MapsOptions

    run = make_run(tmp_path / "run", steps=(0, 500), arch="timesformer_divided", agent={"mem_len": 2})
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "3", "--context", "2", "--out",
                 str(tmp_path / "eval.npz")]) == 0
    replays = []
    monkeypatch.setattr(stage, "pre_step_state", lambda *args: replays.append(args) or pre_step_state(*args))
    options = {"maps": MapsOptions(methods=("gradient",)), "atom": AtomOptions(methods=("gradient",))}
    analyse_run(run, tmp_path / "eval.npz", stages=("maps", "atom", "health"), options=options, workers=1,
                progress=False, log=lambda line: None)
    assert len(replays) == 2  # one per checkpoint, not one per stage and checkpoint
    kept = sorted((run / "analysis" / "cache").glob("states-*/step_*.npz"))
    assert [path.name[:17] for path in kept] == ["step_000000000000", "step_000000000500"]
    final = Run.open(run)
    with stage.exact_arithmetic():  # as the jobs replayed them: on one thread
        replayed = pre_step_state(final.load(final.final).agent.eval(), load_evalset(tmp_path / "eval.npz"))
    stored = list(load_result(kept[-1]).values())
    assert len(stored) == len(replayed) and all(torch.equal(torch.from_numpy(a), b)
                                                for a, b in zip(stored, replayed, strict=True))


# ---- a new analysis: this module's options, job, files and report section, and one registry entry ----


@dataclass(frozen=True)
class ValueOptions:
    scale: float = 1.0
    """what the values are multiplied by"""


def value_job(job: Job) -> pd.DataFrame:
    evalset = load_evalset(job.evalset)
    agent = job.load(evalset).agent
    with torch.no_grad():
        outputs, _ = agent(evalset.step_inputs(), agent.initial_state(len(evalset)))
    return pd.DataFrame({"value": [float(outputs["baseline"].mean()) * job.options.scale]})


def value_finish(run: Run, results: dict, options: ValueOptions) -> None:
    write_table(run.analysis / "value.csv", table_of(results))


def value_section(run: Run) -> str:
    table = run.read_table("value.csv")
    return "<p>missing</p>" if table is None else f"<p>mean value {html.escape(str(table.value.iloc[-1]))}</p>"


VALUE = Stage(name="value", summary="the critic's mean value on the evaluation frames", description="A test stage.",
              options=ValueOptions, compute=value_job, finish=value_finish, section=value_section,
              heading="Value")


def test_a_new_stage_is_a_module_and_a_registry_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(STAGES, "value", VALUE)
    run = make_run(tmp_path / "run", steps=(0, 500))
    evalset = ["--evalset", str(tmp_path / "eval.npz")]
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "2", "--context", "1", "--out",
                 str(tmp_path / "eval.npz")]) == 0
    assert main(["value", "--help"]) == 0 and "what the values are multiplied by" in capsys.readouterr().out
    assert main(["value", str(run), *evalset, "--frames", "2"]) == 2  # --frames is not a flag of it
    assert main(["value", str(run), *evalset, "--scale", "2.0", "--workers", "1"]) == 0
    table = pd.read_csv(run / "analysis" / "value.csv")
    assert table.step.tolist() == [0, 500] and table.value.notna().all()
    assert main(["report", str(run), "--video-frames", "0"]) == 0
    page = (run / "report.html").read_text()
    assert '<section id="value"><h2>Value</h2>' in page and "mean value" in page


ENTROPY_STAGE = '''"""The policy's entropy on the evaluation frames, per checkpoint: a new analysis, one module."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analyses import plots
from analyses.stage import Job, Stage, load_result, table_of, write_table


@dataclass(frozen=True)
class EntropyOptions:
    frames: int = 3
    """frames of the evaluation set used"""


def compute(job: Job) -> pd.DataFrame:
    _, loaded, steps = job.evaluation(slice(0, job.options.frames))
    with torch.no_grad():
        outputs, _ = loaded.agent(steps.inputs, steps.state)
    policy = torch.softmax(outputs["policy_logits"][0].float(), -1)
    return pd.DataFrame({"entropy": [float(-(policy * policy.log()).sum(-1).mean())]})


def finish(run, results, options) -> None:
    table = table_of(results)
    write_table(run.analysis / "entropy.csv", table)
    figure, axis = plots.figure(4, 3)
    axis.plot(table.step, table.entropy)
    plots.save(figure, run.analysis / "entropy.png")


def section(run) -> str:
    table = run.read_table("entropy.csv")
    return "<p>no entropy yet</p>" if table is None else f"<p id='entropy-values'>{table.entropy.round(3).tolist()}</p>"


STAGE = Stage(name="entropy", summary="the policy's entropy on the evaluation frames",
              description="The mean entropy of the policy on the first frames of the evaluation set, per checkpoint.",
              options=EntropyOptions, compute=compute, finish=finish, section=section, heading="Policy entropy",
              tables=("entropy.csv",), figures=("entropy.png",))
'''


def test_a_new_analysis_is_one_module_and_one_registry_entry(tmp_path):
    """In a copy of the packages: add analyses/entropy.py and its entry in the registry, nothing else; the stage has
    its command and help, runs in `interp analyse`, has its section and download in the report, and its figure is
    among those the docs' scripts copy."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "copy"
    for package in ("interp", "analyses", "trainers", "cli"):
        shutil.copytree(root / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "analyses" / "entropy.py").write_text(ENTROPY_STAGE)
    registry = copy / "analyses" / "__init__.py"
    text = registry.read_text()
    text = text.replace("from analyses import agreement,", "from analyses import agreement, entropy,")
    text = text.replace("video.STAGE)}", "video.STAGE, entropy.STAGE)}")
    assert "entropy.STAGE" in text
    registry.write_text(text)
    run = make_run(tmp_path / "run", steps=(0, 500))

    def interp(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli", *arguments], cwd=copy, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(copy)}, timeout=600)

    listed = interp("--help")
    assert "entropy" in listed.stdout and "the policy's entropy" in listed.stdout
    assert "--frames" in interp("entropy", "--help").stdout
    assert "entropy" in interp("analyse", "--help").stdout
    analysed = interp("analyse", str(run), "--stages", "entropy", "--frames", "3", "--workers", "1")
    assert analysed.returncode == 0, analysed.stderr
    table = pd.read_csv(run / "analysis" / "entropy.csv")
    assert table.step.tolist() == [0, 500] and table.entropy.between(0, np.log(3) + 1e-6).all()
    reported = interp("report", str(run), "--video-frames", "0")
    assert reported.returncode == 0, reported.stderr
    page = (run / "report.html").read_text()
    assert '<section id="entropy">' in page and "entropy-values" in page and 'download="run_entropy.csv"' in page
    declared = subprocess.run([sys.executable, "-c", "import sys; from analyses import figures_of; from interp.runs "
                               "import Run; print(figures_of(Run.open(sys.argv[1]))['entropy'])", str(run)],
                              cwd=copy, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(copy)})
    assert declared.stdout.strip() == f"[PosixPath('{run / 'analysis' / 'entropy.png'}')]", declared.stderr
