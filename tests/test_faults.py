"""Faults in the middle of work: a killed trainer resumed, two commands on one run, a full disk, actors that keep
dying, a killed analysis. Nothing is lost, nothing is silently wrong, nothing is left running."""

import contextlib
import csv
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli import main
from interp.agents import load_checkpoint
from interp.errors import UserError
from interp.runs import Run
from trainers.config import TrainConfig
from trainers.impala import Trainer, resume_config

SMALL = dict(env="MiniPong-v0", envs_per_actor=2, batch_size=4, unroll=8, checkpoint_every=400)


def steps_logged(run: Path) -> list[int]:
    with open(run / "metrics.csv") as file:
        return [int(row["step"]) for row in csv.DictReader(file)]


def train_arguments(out: Path, steps: int = 10_000_000) -> list[str]:
    return ["train", "--arch", "baseline", "--env", "MiniPong-v0", "--steps", str(steps), "--out", str(out),
            "--actors", "1", "--envs-per-actor", "2", "--batch-size", "4", "--unroll", "8", "--checkpoint-every", "640"]


def start_training(out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli", *train_arguments(out), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def lock_is_free(run: Path) -> bool:
    try:
        with Run.open(run).lock("the test"):
            return True
    except UserError:
        return False


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def test_a_killed_run_resumes_without_logging_a_step_twice(tmp_path):
    out = tmp_path / "run"
    process = start_training(out)
    wait_for(lambda: (out / "metrics.csv").exists() and len(steps_logged(out)) > 60)
    process.kill()
    process.wait(timeout=30)
    wait_for(lambda: lock_is_free(out))  # its actors, forked holding the run's lock, release it as they exit
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    assert max(steps_logged(out)) > state["step"]  # rows written after the last saved state
    # the first command line again, with --resume and more steps: repeating the run's settings is not a change
    assert main([*train_arguments(out, steps=state["step"] + 320), "--resume"]) == 0
    steps = steps_logged(out)
    assert steps == sorted(set(steps)) and steps[-1] == state["step"] + 320
    for path in (out / "checkpoints").glob("step_*.pt"):  # each checkpoint's weights are the state's at its step
        assert load_checkpoint(path).meta["step"] == int(path.stem.split("_")[1])


def test_a_run_killed_between_checkpoints_resumes_from_its_last_saved_state(tmp_path):
    """--state-every-seconds saves the trainer state between checkpoints: killed without warning long after its last
    checkpoint, the run loses at most the update in flight, and resuming writes the checkpoint of that state."""
    out, sparse = tmp_path / "run", ["--checkpoint-every", "1000000"]  # after 2,000 steps the next is at 5,000
    process = start_training(out, *sparse, "--state-every-seconds", "0.001")
    wait_for(lambda: (out / "metrics.csv").exists() and len(steps_logged(out)) > 90)  # 2,880 steps
    process.kill()
    process.wait(timeout=30)
    wait_for(lambda: lock_is_free(out))  # its actors, forked holding the run's lock, release it as they exit
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    checkpoints = sorted(int(path.stem.split("_")[1]) for path in (out / "checkpoints").glob("step_*.pt"))
    assert state["step"] > checkpoints[-1] and max(steps_logged(out)) - state["step"] <= 2 * 32
    assert main([*train_arguments(out, steps=state["step"] + 64), *sparse, "--resume"]) == 0
    assert load_checkpoint(out / "checkpoints" / f"step_{state['step']:012d}.pt").meta["step"] == state["step"]
    steps = steps_logged(out)
    assert steps == sorted(set(steps)) and steps[-1] == state["step"] + 64


def test_a_second_command_on_a_run_in_use_is_refused(tmp_path):
    out = tmp_path / "run"
    process = start_training(out)
    try:
        wait_for(lambda: (out / "metrics.csv").exists() and len(steps_logged(out)) > 5)
        second = subprocess.run([sys.executable, "-m", "cli", "train", "--resume", "--out", str(out)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "in use by interp train (pid" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    analysis = out / "analysis"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from interp.runs import Run; run = Run.open(sys.argv[1]); "
        "lock = run.lock('interp analyse', folder=run.analysis); lock.__enter__(); print('held', flush=True); "
        "time.sleep(60)"), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            assert main(["evaluation", str(out), "--episodes", "1"]) == 2
        assert "in use by interp analyse" in stderr.getvalue() and not (analysis / "evaluation.csv").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB file system; where mounting is not allowed, a writer that fails as a full disk does."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3000k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_stops_training_with_one_line_and_a_run_that_resumes(small_disk, monkeypatch, tmp_path):
    folder, mounted = small_disk
    out = folder / "run"
    config = TrainConfig(arch="baseline", steps=10**6, out=str(out), actors=0, checkpoint_every=64,
                         first_checkpoint=32, agent={"hidden": 16},  # a checkpoint of 0.5 MB, a state of 1 MB
                         **{k: v for k, v in SMALL.items() if k != "checkpoint_every"})
    if not mounted:  # the third write fails as a full disk does
        import trainers.impala

        writes = {"count": 0}
        real = trainers.impala.save_checkpoint

        def failing(*args, **kwargs):
            writes["count"] += 1
            if writes["count"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        monkeypatch.setattr(trainers.impala, "save_checkpoint", failing)
    with pytest.raises(UserError, match="free some space and continue with --resume"):
        Trainer(config, progress=False).run()
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    newest = max(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.pt"))
    assert newest <= state["step"]  # never a checkpoint newer than the state a resume starts from
    for path in (out / "checkpoints").glob("step_*.pt"):
        load_checkpoint(path)
    moved = tmp_path / "moved"  # room again: the run continues where its state is
    subprocess.run(["cp", "-r", str(out), str(moved)], check=True)
    monkeypatch.undo()
    Trainer(resume_config(moved, steps=state["step"] + 64), resume=True, progress=False).run()
    assert (moved / "checkpoints" / f"step_{state['step']:012d}.pt").exists()
    assert steps_logged(moved) == sorted(set(steps_logged(moved)))


def test_actors_that_keep_dying_end_the_run_with_a_final_checkpoint(tmp_path):
    out = tmp_path / "run"
    process = start_training(out, "--max-actor-restarts", "0")
    wait_for(lambda: (out / "metrics.csv").exists() and len(steps_logged(out)) > 5)
    actors = [pid for pid in processes_mentioning(str(out)) if pid != process.pid]
    assert actors
    for pid in actors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and "restarts are used up" in stderr and "Traceback" not in stderr
    final = max(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.pt"))
    assert final == steps_logged(out)[-1] > 0


def test_a_killed_analysis_leaves_no_worker_behind(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--arch", "baseline", "--out", str(run), "--steps", "96", "--actors", "0",
                 "--envs-per-actor", "2", "--batch-size", "2", "--unroll", "8", "--checkpoint-every", "32",
                 "--first-checkpoint", "16"]) == 0
    process = subprocess.Popen([sys.executable, "-m", "cli", "analyse", str(run), "--frames", "4",
                                "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(_children(process.pid)) >= 3, timeout=180)  # the resource tracker and two workers
    children = _children(process.pid)
    process.kill()  # while the workers may still be starting: they must notice too
    process.wait()
    wait_for(lambda: not any(_alive(pid) for pid in children), timeout=60)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def small_run(tmp_path: Path, name: str = "run", steps: int = 96) -> Path:
    run = tmp_path / name
    assert main(["train", "--arch", "baseline", "--out", str(run), "--steps", str(steps), "--actors", "0",
                 "--envs-per-actor", "2", "--batch-size", "2", "--unroll", "8", "--checkpoint-every", "32",
                 "--first-checkpoint", "16"]) == 0
    return run


def test_a_killed_analysis_worker_is_replaced_and_every_result_kept(tmp_path):
    """SIGKILL of one of `interp atom --workers 2`'s workers: its job goes to a new pool, the others are kept."""
    run = small_run(tmp_path)
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "3", "--context", "2", "--out",
                 str(tmp_path / "eval.npz")]) == 0
    process = subprocess.Popen([sys.executable, "-m", "cli", "atom", str(run), "--evalset",
                                str(tmp_path / "eval.npz"), "--workers", "2", "--methods", "gradient"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def workers() -> list[int]:
        return [pid for pid in _children(process.pid) if b"spawn_main" in _cmdline(pid)]

    wait_for(lambda: len(workers()) >= 2, timeout=180)
    os.kill(workers()[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert "a worker process died" in stderr
    table = (run / "analysis" / "atom.csv").read_text()
    steps = {int(line.split(",")[0]) for line in table.splitlines()[1:]}
    assert steps == set(Run.open(run).steps)  # every checkpoint's rows


def test_a_run_saved_before_the_head_was_renamed_resumes(tmp_path):
    run = small_run(tmp_path, steps=32)
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    state["model"] = {k.replace("actor_critic.", "heads."): v for k, v in state["model"].items()}
    torch.save(state, run / "trainer_state.pt")
    train = Trainer(resume_config(run, steps=64), resume=True, progress=False)
    assert int(load_checkpoint(train.run()).meta["step"]) == 64


def test_temporary_files_a_killed_trainer_left_are_removed(tmp_path):
    run = small_run(tmp_path, steps=32)
    leftovers = [run / "checkpoints" / ".step_000000000064.pt.0a1b2c3d.tmp", run / ".trainer_state.pt.deadbeef.tmp",
                 run / ".metrics.csv.12345678.csv"]
    for path in leftovers:
        path.write_bytes(b"half-written")
    kept = run / "checkpoints" / "notes.txt"  # not a temporary of the trainer: left alone
    kept.write_text("mine")
    Trainer(resume_config(run, steps=64), resume=True, progress=False).run()
    assert not any(path.exists() for path in leftovers) and kept.exists()


def test_typed_options_mean_what_they_say(tmp_path):
    """`--agent-option scale_frames=False` is False (not the true string "False"); `--env-option max_steps=300` is
    MiniPong's episode limit, not the evaluation set's play budget."""
    run = tmp_path / "run"
    assert main(["train", "--arch", "baseline", "--out", str(run), "--steps", "32", "--actors", "0",
                 "--envs-per-actor", "2", "--batch-size", "2", "--unroll", "8", "--agent-option",
                 "scale_frames=False"]) == 0
    assert load_checkpoint(run / "checkpoints" / "step_000000000032.pt").agent.config.scale_frames is False
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "3", "--context", "2", "--out",
                 str(tmp_path / "eval.npz"), "--env-option", "max_steps=300"]) == 0
    import json

    import numpy as np
    meta = json.loads(str(np.load(tmp_path / "eval.npz")["meta"]))
    assert meta["env_options"] == {"max_steps": 300}
