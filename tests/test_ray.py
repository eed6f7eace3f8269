"""The Ray backend, on a local Ray with 2 CPUs: training actors and analysis tasks."""

import os
import signal
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray  # the `ray` extra, which `make test` installs
import torch

from analyses.analyse import analyse_run
from analyses.atom import AtomOptions
from analyses.maps import MapsOptions
from analyses.stage import Job, load_result, run_jobs, verified
from cli import main
from interp.agents import load_checkpoint, make_agent, save_checkpoint
from interp.cluster import connect, disconnect
from interp.runs import Run
from trainers.config import TrainConfig
from trainers.impala import Trainer, TrainerError
from trainers.ray_actors import RayWorkers

TINY = {"env": "MiniPong-v0", "actors": 2, "envs_per_actor": 2, "batch_size": 4, "unroll": 5, "frame_size": 42}


@pytest.fixture(scope="module")
def local_ray():
    started = connect(num_cpus=2)
    yield
    disconnect(started)


def test_training_on_ray_writes_the_run_directory_of_the_local_backend(tmp_path, local_ray):
    runs = {}
    for backend in ("local", "ray"):
        config = TrainConfig(arch="baseline", steps=200, checkpoint_every=100, out=str(tmp_path / backend),
                             backend=backend, **TINY)
        final = Trainer(config, progress=False).run()
        assert final.name == "step_000000000200.pt"
        runs[backend] = tmp_path / backend
    names = {backend: sorted(p.name for p in (run / "checkpoints").iterdir()) for backend, run in runs.items()}
    assert names["ray"] == names["local"] and len(names["ray"]) >= 3
    metrics = {backend: pd.read_csv(run / "metrics.csv") for backend, run in runs.items()}
    assert list(metrics["ray"].columns) == list(metrics["local"].columns)
    assert metrics["ray"].step.tolist() == metrics["local"].step.tolist()
    assert np.isfinite(metrics["ray"].total_loss).all()
    loaded = load_checkpoint(runs["ray"] / "checkpoints" / "step_000000000200.pt")
    first = load_checkpoint(runs["ray"] / "checkpoints" / "step_000000000000.pt")
    assert loaded.meta["step"] == 200 and loaded.meta["config"]["backend"] == "ray"
    changed = [not torch.equal(a, b) for a, b in zip(loaded.agent.state_dict().values(),
                                                      first.agent.state_dict().values(), strict=True)]
    assert any(changed)  # the learner trained on what the Ray actors sent


def _batch_is_complete(batch, states, config) -> None:
    assert batch["frame"].shape == (config.unroll + 1, config.batch_size, 4, 42, 42)
    assert batch["policy_logits"].shape[:2] == (config.unroll + 1, config.batch_size)
    assert all(s.shape[0] == config.batch_size for s in states)


def test_a_ray_actor_that_dies_is_replaced_and_restarts_are_bounded(tmp_path, local_ray):
    config = TrainConfig(arch="mott", steps=10**6, out=str(tmp_path), backend="ray", max_actor_restarts=1, **TINY)
    agent = make_agent("mott", (4, 42, 42), 3)
    workers = RayWorkers(config, np.random.default_rng(0))
    workers.publish(agent)
    workers.start()
    try:
        _batch_is_complete(*workers.next_batch(lambda: False), config)  # recurrent state travels with the rollout
        os.kill(ray.get(workers.actors[0].pid.remote()), signal.SIGKILL)
        for _ in range(4):
            workers.publish(agent)
            _batch_is_complete(*workers.next_batch(lambda: False), config)
        assert workers.restarts.used == 1
        os.kill(ray.get(workers.actors[0].pid.remote()), signal.SIGKILL)
        with pytest.raises(TrainerError, match="restarts are used up"):
            for _ in range(8):
                workers.next_batch(lambda: False)
    finally:
        workers.shutdown()


def _run(tmp_path: Path, name: str, arch: str = "baseline") -> Path:
    torch.manual_seed(0)
    run = tmp_path / name
    for step in (0, 500):
        save_checkpoint(run / "checkpoints" / f"step_{step:012d}.pt", make_agent(arch, num_actions=3),
                        env="MiniPong-v0", step=step)
    (run / "config.json").write_text('{"env": "MiniPong-v0", "env_options": {}}')
    return run


def test_analyse_on_ray_writes_the_files_of_the_local_backend(tmp_path, local_ray):
    local, on_ray = _run(tmp_path, "local"), _run(tmp_path, "ray")
    assert main(["evalset", str(local), "--env", "MiniPong-v0", "--frames", "3", "--context", "2",
                 "--out", str(tmp_path / "eval.npz")]) == 0
    for run, backend in ((local, "local"), (on_ray, "ray")):
        assert main(["analyse", str(run), "--evalset", str(tmp_path / "eval.npz"), "--backend", backend]) == 0
    for table in ("atom.csv", "sanity.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(on_ray / "analysis" / table),
                                      pd.read_csv(local / "analysis" / table))
    cached = sorted(p.relative_to(on_ray) for p in (on_ray / "analysis" / "cache").rglob("step_*"))
    assert cached
    assert cached == sorted(p.relative_to(local) for p in (local / "analysis" / "cache").rglob("step_*"))


def test_an_analysis_error_on_ray_is_the_job_s_own(tmp_path, local_ray, capsys):
    run = _run(tmp_path, "run")
    other = tmp_path / "pong.npz"
    assert main(["evalset", str(run), "--env", "MiniPong-TwoBall-v0", "--frames", "2", "--context", "1",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["analyse", str(run), "--evalset", str(other), "--backend", "ray"]) == 2
    error = capsys.readouterr().err
    assert "played on MiniPong-TwoBall-v0, not on the run's MiniPong-v0" in error and "Traceback" not in error


def _dies_once(job: Job, marker_dir: Path) -> pd.DataFrame:
    """A job whose first attempt loses its worker process (as a node failure would)."""
    marker = marker_dir / f"{job.checkpoint.stem}.attempted"
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return pd.DataFrame({"pid": [os.getpid()], "checkpoint": [job.checkpoint.name]})


def test_a_lost_analysis_worker_is_retried_and_nothing_is_half_written(tmp_path, local_ray):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job lives in this test module
    run = Run.open(_run(tmp_path, "run"))
    cache = tmp_path / "cache"
    jobs = {cache / f"step_{step:012d}.csv": Job("test", run.checkpoint(step), step, run.environment, None, None,
                                                 "baseline") for step in run.steps}
    run_jobs(jobs, backend="ray", progress=False, compute=partial(_dies_once, marker_dir=tmp_path))
    assert len(list(tmp_path.glob("*.attempted"))) == 2  # every first attempt died
    for path, job in jobs.items():
        assert verified(path) and load_result(path).checkpoint.tolist() == [job.checkpoint.name]
    assert sorted(p.name for p in cache.iterdir() if p.suffix == ".csv") == ["step_000000000000.csv",
                                                                           "step_000000000500.csv"]


def test_atom_on_ray_equals_atom_in_process(tmp_path, local_ray):
    run = _run(tmp_path, "run")
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "2", "--context", "1",
                 "--out", str(tmp_path / "eval.npz")]) == 0
    tables = []
    for backend in ("local", "ray"):
        for cached in (run / "analysis" / "cache").rglob("step_*"):
            cached.unlink()
        analyse_run(run, tmp_path / "eval.npz", stages=("atom",), backend=backend, progress=False,
                    options={"atom": AtomOptions(methods=("gradient",)), "maps": MapsOptions(methods=("gradient",))},
                    log=lambda line: None)
        tables.append(pd.read_csv(run / "analysis" / "atom.csv"))
    pd.testing.assert_frame_equal(*tables)


def test_without_ray_the_backend_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees: ImportError
    assert main(["train", "--arch", "baseline", "--steps", "100", "--out", str(tmp_path / "run"),
                 "--backend", "ray"]) == 2
    assert "pip install '.[ray]'" in capsys.readouterr().err
    run = _run(tmp_path, "analysed")
    assert main(["analyse", str(run), "--backend", "ray"]) == 2
    assert "pip install '.[ray]'" in capsys.readouterr().err
