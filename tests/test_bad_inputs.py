"""Every bad input a user or an attacker can give, table-driven: one line on stderr, exit status 2, no traceback,
and nothing written or changed."""

import contextlib
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cli import main
from interp.agents import make_agent, save_checkpoint

TINY = ["--env", "MiniPong-v0", "--steps", "64", "--actors", "0", "--envs-per-actor", "2", "--batch-size", "2",
        "--unroll", "4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small finished run with its evaluation set, and files to spoil."""
    root = tmp_path_factory.mktemp("world")
    run = root / "run"
    assert main(["train", "--arch", "baseline", "--out", str(run), *TINY]) == 0
    assert main(["evalset", str(run), "--env", "MiniPong-v0", "--frames", "2", "--context", "1", "--out",
                 str(root / "eval.npz")]) == 0
    (root / "a_file").write_text("x")
    return root


def spoiled_checkpoint(folder: Path, change) -> Path:
    path = save_checkpoint(folder / "spoiled.pt", make_agent("baseline", num_actions=3), env="MiniPong-v0")
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def spoiled_evalset(folder: Path, change) -> Path:
    with np.load(folder / "eval.npz") as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    path = folder / "spoiled_eval.npz"
    np.savez(path, **arrays)
    return path


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/interp_pwned",))


def malicious(folder: Path) -> Path:
    path = folder / "evil.pt"
    torch.save({"format": "interp-agent-checkpoint", "agent": Evil()}, path)
    return path


def broken_config(folder: Path, text: str) -> Path:
    run = folder / f"broken_{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    if not run.exists():
        assert main(["train", "--arch", "baseline", "--out", str(run), *TINY]) == 0
    (run / "config.json").write_text(text)
    return run


def tampered_state(folder: Path) -> Path:
    run = folder / "tampered"
    if not run.exists():
        assert main(["train", "--arch", "baseline", "--out", str(run), *TINY]) == 0
    (run / "trainer_state.pt").write_bytes(b"\x00" * 64)
    return run


def run_with_a_stranger(folder: Path, name: str, arch: str, env: str) -> Path:
    """A baseline run on MiniPong-v0 with one more checkpoint: an ``arch`` agent trained on ``env``."""
    run = folder / name
    if not run.exists():
        assert main(["train", "--arch", "baseline", "--out", str(run), *TINY]) == 0
        save_checkpoint(run / "checkpoints" / "step_000000000032.pt", make_agent(arch, num_actions=3), env=env)
    return run


def foreign_in_run(folder: Path) -> Path:
    return run_with_a_stranger(folder, "mixed", "mott", "MiniPong-v0")


def garbled(folder: Path, name: str, text: str) -> Path:
    run = folder / f"garbled_{name}"
    if not run.exists():
        assert main(["train", "--arch", "baseline", "--out", str(run), *TINY]) == 0
    target = run / name if name == "metrics.csv" else run / "analysis" / name
    target.parent.mkdir(exist_ok=True)
    target.write_text(text)
    return run


def both_head_names(folder: Path) -> Path:
    """A checkpoint with its head's weights under both the old name (heads.) and today's (actor_critic.)."""
    return spoiled_checkpoint(folder, lambda p: p["state_dict"].update(
        {k.replace("actor_critic.", "heads."): v.clone() for k, v in p["state_dict"].items()
         if k.startswith("actor_critic.")}))


def of_another_env(folder: Path) -> Path:
    return run_with_a_stranger(folder, "other_env", "baseline", "MiniPong-TwoBall-v0")


def new(w: Path) -> list[str]:
    return ["train", "--arch", "baseline", "--out", str(w / "new"), "--steps", "64"]


# (case, argv from the world folder, words the one line must contain)
CASES = [
    ("rollout slots beyond memory (batch)", lambda w: [*new(w), "--batch-size", "1000000"], "GiB"),
    ("rollout slots beyond memory (buffers)", lambda w: [*new(w), "--num-buffers", "100000000"], "GiB"),
    ("env option frame_size", lambda w: [*new(w), "--env-option", "frame_size=42"], "set by --frame-size"),
    ("env option seed", lambda w: [*new(w), "--env-option", "seed=5"], "set by --seed"),
    ("env option enemy_speed NaN", lambda w: [*new(w), "--env-option", "enemy_speed=NaN"], "enemy_speed"),
    ("env option points 2.5", lambda w: [*new(w), "--env-option", "points=2.5"], "whole numbers"),
    ("agent option 1 for a boolean", lambda w: [*new(w), "--agent-option", "scale_frames=1"], "true or false"),
    ("agent option text for a number", lambda w: [*new(w), "--agent-option", "hidden=big"], "a whole number"),
    ("train into an empty path", lambda w: ["train", "--arch", "baseline", "--out", ""], "empty path"),
    ("evalset over the trainer state", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--out",
                                                  str(w / "run" / "trainer_state.pt")], "belongs to the run"),
    ("report over the metrics", lambda w: ["report", str(w / "run"), "--out", str(w / "run" / "metrics.csv")],
     "belongs to the run"),
    ("evalset into the checkpoints", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--out",
                                                str(w / "run" / "checkpoints" / "e.npz")], "its checkpoints"),
    ("both old and new head names", lambda w: ["evalset", str(both_head_names(w)), "--env", "MiniPong-v0",
                                               "--out", str(w / "e.npz")], "holds both heads.* and actor_critic.*"),
    ("1e11 actions", lambda w: ["evalset", str(spoiled_checkpoint(w, lambda p: p["agent"].update(
        num_actions=10**11))), "--env", "MiniPong-v0", "--out", str(w / "e.npz")], "actions; an Atari game"),
    ("frames of 1e7 pixels", lambda w: ["evalset", str(spoiled_checkpoint(w, lambda p: p["agent"].update(
        obs_shape=[4, 84, 10**7]))), "--env", "MiniPong-v0", "--out", str(w / "e.npz")], "observations of shape"),
    ("a checkpoint of another environment", lambda w: ["atom", str(of_another_env(w)), "--evalset",
                                                       str(w / "eval.npz"), "--methods", ""],
     "trained on MiniPong-TwoBall-v0, not on the run's MiniPong-v0"),
    ("batch size -4", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--batch-size", "-4"],
     "batch-size -4"),
    ("batch size 0", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--batch-size", "0"],
     "batch-size 0"),
    ("negative lr", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--lr", "-1"], "lr"),
    ("nan lr", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--lr", "nan"], "lr"),
    ("negative seed", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--seed", "-1"], "seed"),
    ("frame size 0", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--frame-size", "0"],
     "frame size"),
    ("unknown env option", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--env-option",
                                      "bogus=1"], "bogus"),
    ("points 0", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--env-option", "points=0"],
     "points"),
    ("points abc", lambda w: ["train", "--arch", "baseline", "--out", str(w / "new"), "--env-option", "points=abc"],
     "points"),
    ("negative memory", lambda w: ["train", "--arch", "adaptive", "--out", str(w / "new"), "--agent-option",
                                   "mem_len=-1"], "mem_len"),
    ("unknown vision", lambda w: ["train", "--arch", "mott", "--out", str(w / "new"), "--agent-option",
                                  "vision=foo"], "vision"),
    ("unknown arch", lambda w: ["train", "--arch", "nope", "--out", str(w / "new")], "nope"),
    ("resume: config not JSON", lambda w: ["train", "--resume", "--out", str(broken_config(w, "{not json"))],
     "config"),
    ("resume: config a list", lambda w: ["train", "--resume", "--out", str(broken_config(w, "[]"))], "config"),
    ("resume: config wrong types", lambda w: ["train", "--resume", "--out",
                                              str(broken_config(w, '{"steps": "many"}'))], "config"),
    ("resume: agent null", lambda w: ["train", "--resume", "--out", str(broken_config(w, '{"agent": null}'))],
     "config"),
    ("resume: another arch", lambda w: ["train", "--resume", "--out", str(w / "run"), "--arch", "mott"], "--arch"),
    ("resume: another env", lambda w: ["train", "--resume", "--out", str(w / "run"), "--env", "ALE/Pong-v5"],
     "--env"),
    ("resume: broken state", lambda w: ["train", "--resume", "--out", str(tampered_state(w)), "--steps", "128"],
     "trainer state"),
    ("train into a file", lambda w: ["train", "--arch", "baseline", "--out", str(w / "a_file")], "is a file"),
    ("train under a file", lambda w: ["train", "--arch", "baseline", "--out", str(w / "a_file" / "run")],
     "is a file"),
    ("evalset 0 frames", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--frames", "0", "--out",
                                    str(w / "e.npz")], "frames"),
    ("evalset -1 frames", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--frames", "-1", "--out",
                                     str(w / "e.npz")], "frames"),
    ("evalset context 0", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--context", "0", "--out",
                                     str(w / "e.npz")], "context"),
    ("evalset context -1", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--context", "-1",
                                      "--out", str(w / "e.npz")], "context"),
    ("evalset seed -1", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--seed", "-1", "--out",
                                   str(w / "e.npz")], "seed"),
    ("evalset of Pong from MiniPong", lambda w: ["evalset", str(w / "run"), "--env", "ALE/Pong-v5", "--out",
                                                 str(w / "e.npz")], "cannot play it"),
    ("evalset into a folder", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--out", str(w)],
     "is a folder"),
    ("evalset under a file", lambda w: ["evalset", str(w / "run"), "--env", "MiniPong-v0", "--out",
                                        str(w / "a_file" / "e.npz")], "is a file"),
    ("analyse 0 frames", lambda w: ["analyse", str(w / "run"), "--frames", "0"], "frames"),
    ("analyse 0 workers", lambda w: ["analyse", str(w / "run"), "--workers", "0"], "workers"),
    ("analyse -3 workers", lambda w: ["analyse", str(w / "run"), "--workers", "-3"], "workers"),
    ("analyse 0 episodes", lambda w: ["analyse", str(w / "run"), "--episodes", "0"], "episodes"),
    ("analyse a file", lambda w: ["analyse", str(w / "a_file")], "is a file"),
    ("analyse nothing", lambda w: ["analyse", str(w / "nowhere")], "no such run directory"),
    ("sanity 0 frames", lambda w: ["sanity", str(w / "run"), "--evalset", str(w / "eval.npz"), "--frames", "0"],
     "frames"),
    ("sanity -1 frames", lambda w: ["sanity", str(w / "run"), "--evalset", str(w / "eval.npz"), "--frames", "-1"],
     "frames"),
    ("video 0 frames", lambda w: ["video", str(w / "run" / "checkpoints" / "step_000000000064.pt"), "--frames",
                                  "0", "--out", str(w / "v.mp4")], "frames"),
    ("demo 0 steps", lambda w: ["demo", "--steps", "0", "--out", str(w / "demo")], "steps"),
    ("demo seed -1", lambda w: ["demo", "--seed", "-1", "--out", str(w / "demo")], "seed"),
    ("quickstart seed -1", lambda w: ["quickstart", "--seed", "-1", "--out", str(w / "quick")], "seed"),
    ("report -1 video frames", lambda w: ["report", str(w / "run"), "--video-frames", "-1"], "video-frames"),
    ("report garbled metrics", lambda w: ["report", str(garbled(w, "metrics.csv", '"a,b\nc')), "--video-frames",
                                          "0"], "metrics.csv"),
    ("report wrong-column atom", lambda w: ["report", str(garbled(w, "atom.csv", "x,y\n1,2\n")), "--video-frames",
                                            "0"], "column"),
    ("checkpoint without agent", lambda w: ["evalset", str(spoiled_checkpoint(w, lambda p: p.pop("agent"))),
                                            "--env", "MiniPong-v0", "--out", str(w / "e.npz")], "description"),
    ("checkpoint without obs shape", lambda w: ["evalset", str(spoiled_checkpoint(
        w, lambda p: p["agent"].pop("obs_shape"))), "--env", "MiniPong-v0", "--out", str(w / "e.npz")],
     "observations of shape None"),
    ("checkpoint config not a dict", lambda w: ["evalset", str(spoiled_checkpoint(
        w, lambda p: p["agent"].update(config=[1]))), "--env", "MiniPong-v0", "--out", str(w / "e.npz")],
     "description"),
    ("malicious pickle", lambda w: ["evalset", str(malicious(w)), "--env", "MiniPong-v0", "--out",
                                    str(w / "e.npz")], "refused"),
    ("evalset meta not JSON", lambda w: ["atom", str(w / "run"), "--evalset", str(spoiled_evalset(
        w, lambda a: a.update(meta=np.array("{nope"))))], "meta"),
    ("evalset meta a list", lambda w: ["atom", str(w / "run"), "--evalset", str(spoiled_evalset(
        w, lambda a: a.update(meta=np.array("[1, 2]"))))], "meta"),
    ("evalset meta without env", lambda w: ["atom", str(w / "run"), "--evalset", str(spoiled_evalset(
        w, lambda a: a.update(meta=np.array('{"seed": 0}'))))], "meta"),
    ("evalset without frames", lambda w: ["atom", str(w / "run"), "--evalset", str(spoiled_evalset(
        w, lambda a: a.update({k: v[:0] for k, v in a.items() if k != "meta"})))], "no frames"),
    ("evalset lengths differ", lambda w: ["atom", str(w / "run"), "--evalset", str(spoiled_evalset(
        w, lambda a: a.update(reward=a["reward"][:1])))], "reward"),
    ("evalset float frames", lambda w: ["atom", str(w / "run"), "--evalset", str(spoiled_evalset(
        w, lambda a: a.update(obs=a["obs"].astype(np.float32))))], "data types"),
    ("evalset not a zip", lambda w: ["atom", str(w / "run"), "--evalset", str(w / "a_file")], "evaluation set"),
    ("another architecture in the run", lambda w: ["atom", str(foreign_in_run(w)), "--evalset",
                                                   str(w / "eval.npz"), "--methods", ""], "'mott'"),
    ("unknown flag", lambda w: ["atom", str(w / "run"), "--bogus"], "unrecognized"),
    ("bad rule", lambda w: ["atom", str(w / "run"), "--rule", "magic"], "magic"),
]


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize(("case", "argv", "words"), CASES, ids=[case for case, _, _ in CASES])
def test_bad_input_is_one_line_and_exit_status_2_and_changes_nothing(world, case, argv, words):
    arguments = argv(world)  # may create the spoiled files it names
    before = snapshot(world)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(arguments)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    assert status == 2, (case, stderr.getvalue())
    assert len(lines) == 1 and "Traceback" not in stderr.getvalue(), lines
    assert words in lines[0], lines[0]
    assert "weights_only" not in lines[0]  # never torch's advice to load without its safeguard
    assert snapshot(world) == before, case
    assert not Path("/tmp/interp_pwned").exists()


def test_a_command_run_again_writes_over_its_own_outputs(world):
    """Not a bad input: an output file left by an earlier run of the same command is replaced, not refused."""
    out = world / "again.npz"
    for _ in range(2):
        assert main(["evalset", str(world / "run"), "--env", "MiniPong-v0", "--frames", "2", "--context", "1",
                     "--out", str(out)]) == 0
    for _ in range(2):
        assert main(["report", str(world / "run"), "--video-frames", "0"]) == 0
    assert (world / "run" / "report.html").stat().st_size > 0
