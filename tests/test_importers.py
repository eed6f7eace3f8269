"""Agents trained elsewhere: Stable-Baselines3 (the real package), CleanRL and TorchBeast checkpoints imported
without running their code, equal to their source's outputs, and analysed as runs."""

import contextlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cli import main
from interp.agents import CheckpointError
from interp.agents.stepper import step_inputs
from interp.envs import make_env
from interp.importers import load_any
from interp.runs import Run

GAME = "ALE/Pong-v5"


def sb3_env(seed: int = 0, envs: int = 2):
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    gym.register_envs(ale_py)
    atari = make_atari_env(GAME, n_envs=envs, seed=seed, env_kwargs={"repeat_action_probability": 0.0,
                                                                     "frameskip": 1})
    return VecTransposeImage(VecFrameStack(atari, 4))


@pytest.fixture(scope="module")
def sb3_runs(tmp_path_factory):
    """Real SB3 training on ALE Pong: PPO and DQN CnnPolicy, checkpoints every 64 steps."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import CheckpointCallback

    root = tmp_path_factory.mktemp("sb3")
    torch.manual_seed(0)
    ppo = PPO("CnnPolicy", sb3_env(), n_steps=64, batch_size=64, n_epochs=1, seed=0, verbose=0, device="cpu")
    ppo.learn(192, callback=CheckpointCallback(save_freq=32, save_path=str(root / "ppo"), name_prefix="rl_model"))
    dqn = DQN("CnnPolicy", sb3_env(), buffer_size=400, learning_starts=32, train_freq=4, seed=0, verbose=0,
              device="cpu")
    dqn.learn(128, callback=CheckpointCallback(save_freq=32, save_path=str(root / "dqn"), name_prefix="rl_model"))
    return root


def frames(count: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_sb3_ppo_and_dqn_import_equal_to_sb3(sb3_runs):
    from stable_baselines3 import DQN, PPO

    observations = frames()
    for algorithm, path in ((PPO, sb3_runs / "ppo" / "rl_model_192_steps.zip"),
                            (DQN, sb3_runs / "dqn" / "rl_model_128_steps.zip")):
        theirs = algorithm.load(path, device="cpu")
        imported = load_any(path)
        outputs, _ = imported.agent(step_inputs(observations[None]), ())
        logits, value = outputs["policy_logits"][0], outputs["baseline"][0]
        with torch.no_grad():
            if algorithm is PPO:
                log_probs = theirs.policy.get_distribution(observations.float()).distribution.logits
                assert torch.allclose(F.log_softmax(logits, -1), log_probs, atol=1e-5)
                assert torch.allclose(value, theirs.policy.predict_values(observations.float())[:, 0], atol=1e-5)
                assert imported.meta["value"] == "critic" and imported.meta["algorithm"] == "PPO"
            else:
                q_values = theirs.q_net(observations.float())
                assert torch.allclose(logits, q_values, atol=1e-5)
                assert torch.allclose(value, q_values.max(-1).values, atol=1e-5)
                assert imported.meta["value"] == "max_q" and imported.meta["algorithm"] == "DQN"
        assert imported.meta["preprocessing"] == "sb3" and imported.meta["source"] == "sb3"


def test_sb3_preprocessing_reproduces_sb3s_observations_pixel_for_pixel():
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        theirs, ours = sb3_env(seed, envs=1), make_env(GAME, preprocessing="sb3")
        expected, (observed, _) = theirs.reset(), ours.reset(seed=seed)
        assert np.array_equal(observed, expected[0])
        plain, _ = make_env(GAME).reset(seed=seed)  # gymnasium's AtariPreprocessing: other frames
        for _ in range(150):
            action = int(rng.integers(6))
            expected, _, done, _ = theirs.step(np.array([action]))
            observed, *_ = ours.step(action)
            assert done[0] or np.array_equal(observed, expected[0])
    assert not np.array_equal(plain, observed)


def test_an_sb3_run_goes_through_analyse_and_report(sb3_runs, tmp_path):
    run = tmp_path / "ppo"
    run.mkdir()
    for path in sorted(sb3_runs.glob("ppo/rl_model_*_steps.zip"))[:3]:  # three checkpoints are enough here
        subprocess.run(["cp", str(path), str(run)], check=True)
    steps = sorted(int(path.stem.split("_")[2]) for path in run.glob("rl_model_*_steps.zip"))
    assert Run.open(run, env=GAME).steps == steps and len(steps) == 3
    arguments = ["--env", GAME, "--workers", "1"]
    assert main(["analyse", str(run), *arguments, "--frames", "3", "--episodes", "1"]) == 0
    atom = pd.read_csv(run / "analysis" / "atom.csv")
    assert sorted(atom.step.unique()) == steps
    shares = atom[(atom.method == "atom") & (atom.metric == "hierarchical_share")]
    assert set(shares.object) == {"ball", "enemy", "player"} and shares.value.notna().all()
    assert set(atom[atom.metric == "profile_share"].method) >= {"perturbation", "gradient"}
    assert main(["report", str(run), "--env", GAME, "--video-frames", "0"]) == 0
    page = (run / "report.html").read_text()
    assert "ATOM across training" in page and 'class="missing"' not in page.split('id="agreement"')[0]


# ---- CleanRL: the networks as its scripts define them, saved as they save them ----


class CleanRLAgent(nn.Module):
    """ppo_atari's Agent."""

    def __init__(self, actions: int):
        super().__init__()
        self.network = nn.Sequential(nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
                                     nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(64 * 7 * 7, 512), nn.ReLU())
        self.actor, self.critic = nn.Linear(512, actions), nn.Linear(512, 1)

    def forward(self, x):
        hidden = self.network(x / 255.0)
        return self.actor(hidden), self.critic(hidden)[:, 0]


class CleanRLQNetwork(nn.Module):
    """dqn_atari's QNetwork."""

    def __init__(self, actions: int):
        super().__init__()
        self.network = nn.Sequential(nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
                                     nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, actions))

    def forward(self, x):
        return self.network(x / 255.0)


def test_cleanrl_networks_import_equal_to_their_own_outputs(tmp_path):
    torch.manual_seed(0)
    observations = frames()
    agent, q_network = CleanRLAgent(6), CleanRLQNetwork(6)
    torch.save(agent.state_dict(), tmp_path / "ppo_atari.cleanrl_model")
    torch.save({"model_weights": q_network.state_dict(), "args": {"env_id": "PongNoFrameskip-v4"}},
               tmp_path / "dqn_atari.cleanrl_model")
    ppo, dqn = load_any(tmp_path / "ppo_atari.cleanrl_model"), load_any(tmp_path / "dqn_atari.cleanrl_model")
    with torch.no_grad():
        logits, value = agent(observations.float())
        q_values = q_network(observations.float())
    ours, _ = ppo.agent(step_inputs(observations[None]), ())
    assert torch.allclose(ours["policy_logits"][0], logits, atol=1e-5)
    assert torch.allclose(ours["baseline"][0], value, atol=1e-5)
    ours, _ = dqn.agent(step_inputs(observations[None]), ())
    assert torch.allclose(ours["policy_logits"][0], q_values, atol=1e-5)
    assert dqn.meta["env"] == GAME and dqn.meta["preprocessing"] == "cleanrl" and ppo.meta["env"] is None


# ---- TorchBeast: AtariNet as MonoBeast defines it, saved as it saves model.tar ----


class TorchBeastAtariNet(nn.Module):
    def __init__(self, actions: int, use_lstm: bool):
        super().__init__()
        self.actions, self.use_lstm = actions, use_lstm
        self.conv1 = nn.Conv2d(4, 32, kernel_size=8, stride=4)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=4, stride=2)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3, stride=1)
        self.fc = nn.Linear(3136, 512)
        size = 512 + actions + 1
        if use_lstm:
            self.core = nn.LSTM(size, size, 2)
        self.policy, self.baseline = nn.Linear(size, actions), nn.Linear(size, 1)

    def forward(self, inputs, state=()):
        steps, batch = inputs["frame"].shape[:2]
        x = inputs["frame"].flatten(0, 1).float() / 255.0
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        x = F.relu(self.fc(x.view(steps * batch, -1)))
        action = F.one_hot(inputs["last_action"].view(steps * batch), self.actions).float()
        reward = inputs["reward"].clamp(-1, 1).view(steps * batch, 1)
        core = torch.cat([x, reward, action], dim=-1)
        if self.use_lstm:
            outputs = []
            for step, not_done in zip(core.view(steps, batch, -1).unbind(), (~inputs["done"]).float().unbind(),
                                      strict=True):
                state = tuple(not_done.view(1, -1, 1) * s for s in state)
                output, state = self.core(step.unsqueeze(0), state)
                outputs.append(output)
            core = torch.cat(outputs).flatten(0, 1)
        return self.policy(core).view(steps, batch, -1), self.baseline(core).view(steps, batch), state


@pytest.mark.parametrize("use_lstm", [False, True])
def test_torchbeast_atarinet_imports_equal_to_its_own_outputs(tmp_path, use_lstm):
    torch.manual_seed(0)
    net = TorchBeastAtariNet(6, use_lstm)
    torch.save({"model_state_dict": net.state_dict(), "optimizer_state_dict": {}, "scheduler_state_dict": {},
                "flags": {"env": "PongNoFrameskip-v4", "use_lstm": use_lstm}}, tmp_path / "model.tar")
    imported = load_any(tmp_path / "model.tar")
    assert imported.agent.name == "atarinet" and imported.meta["env"] == GAME
    generator = torch.Generator().manual_seed(1)
    inputs = step_inputs(frames(8).view(4, 2, 4, 84, 84), torch.randint(0, 6, (4, 2), generator=generator),
                         torch.randn(4, 2, generator=generator) * 2, torch.tensor([[True] * 2, [False] * 2,
                                                                                   [False, True], [False] * 2]))
    state = tuple(torch.zeros(2, 2, 519) for _ in range(2)) if use_lstm else ()
    with torch.no_grad():
        logits, value, _ = net(inputs, state)
        ours, _ = imported.agent(inputs, imported.agent.initial_state(2))
    assert torch.allclose(ours["policy_logits"], logits, atol=1e-5)
    assert torch.allclose(ours["baseline"], value, atol=1e-5)


# ---- refused without running code; bad input in one line ----


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/interp_imported_pwned",))


def test_malicious_files_of_every_source_are_refused_without_running_code(tmp_path, sb3_runs):
    evil = io.BytesIO()
    torch.save({"weights": Evil()}, evil)
    with zipfile.ZipFile(sb3_runs / "ppo" / "rl_model_64_steps.zip") as source, \
            zipfile.ZipFile(tmp_path / "rl_model_32_steps.zip", "w") as forged:
        for name in source.namelist():
            forged.writestr(name, evil.getvalue() if name == "policy.pth" else source.read(name))
    (tmp_path / "model.tar").write_bytes(evil.getvalue())
    (tmp_path / "agent.cleanrl_model").write_bytes(evil.getvalue())
    for name in ("rl_model_32_steps.zip", "model.tar", "agent.cleanrl_model"):
        with pytest.raises(CheckpointError, match="refused"):
            load_any(tmp_path / name)
    assert not Path("/tmp/interp_imported_pwned").exists()


def test_sb3s_pickled_data_fields_are_never_decoded(tmp_path, sb3_runs):
    import base64
    import pickle

    source = sb3_runs / "ppo" / "rl_model_64_steps.zip"
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(Evil())).decode()
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "rl_model_32_steps.zip", "w") as forged:
        for name, content in members.items():
            forged.writestr(name, content)
    assert load_any(tmp_path / "rl_model_32_steps.zip").agent.name == "baseline"
    assert not Path("/tmp/interp_imported_pwned").exists()


def one_line_error(arguments: list[str]) -> str:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(arguments) == 2
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr.getvalue()
    return lines[0]


def test_bad_foreign_input_is_one_line(tmp_path, sb3_runs):
    not_sb3 = tmp_path / "zip"
    not_sb3.mkdir()
    with zipfile.ZipFile(not_sb3 / "rl_model_10_steps.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "no checkpoints" in one_line_error(["analyse", str(not_sb3), "--env", GAME])
    other = tmp_path / "other"
    other.mkdir()
    torch.save({"network.0.weight": torch.zeros(3, 3)}, other / "net_100.cleanrl_model")
    assert "not a state dict" in one_line_error(["analyse", str(other), "--env", GAME])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no checkpoints" in one_line_error(["analyse", str(empty), "--env", GAME])
    mixed = tmp_path / "mixed"
    subprocess.run(["cp", "-r", str(sb3_runs / "ppo"), str(mixed)], check=True)
    torch.save(CleanRLAgent(6).state_dict(), mixed / "agent_500.cleanrl_model")
    assert "mixes checkpoints of several sources" in one_line_error(["analyse", str(mixed), "--env", GAME])
    assert "give --env" in one_line_error(["analyse", str(sb3_runs / "ppo")])


def test_a_read_only_folder_is_analysed_into_out(tmp_path, sb3_runs):
    folder = tmp_path / "readonly"
    subprocess.run(["cp", "-r", str(sb3_runs / "ppo"), str(folder)], check=True)
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode == 0:
        mounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
    if mounted.returncode:  # no mounting here: a folder the analysis cannot write is simulated by --out alone
        folder.chmod(0o555)
    try:
        if mounted.returncode == 0:
            assert "give --out" in one_line_error(["evaluation", str(folder), "--env", GAME, "--episodes", "1"])
        out = tmp_path / "analysis"
        assert main(["evaluation", str(folder), "--env", GAME, "--episodes", "1", "--out", str(out)]) == 0
        assert (out / "evaluation.csv").exists() and not (folder / "analysis").exists()
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(folder)], check=False)


def test_load_agent_reads_every_format_and_names_what_it_found(tmp_path, sb3_runs):
    """One loader: ``interp.agents.load_agent`` takes SB3, CleanRL and TorchBeast files as well as this toolkit's."""
    from interp.agents import load_agent

    sb3 = load_agent(sb3_runs / "ppo" / "rl_model_64_steps.zip")
    assert sb3.name == "baseline" and sb3.config.scale_frames
    torch.save(CleanRLAgent(6).state_dict(), tmp_path / "agent.cleanrl_model")
    assert load_agent(tmp_path / "agent.cleanrl_model").num_actions == 6
    beast = TorchBeastAtariNet(6, use_lstm=False)
    torch.save({"model_state_dict": beast.state_dict(), "flags": {"env": "PongNoFrameskip-v4"}}, tmp_path / "model.tar")
    assert load_agent(tmp_path / "model.tar").name == "atarinet"
    torch.save({"weights": torch.zeros(2), "steps": 3}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"a torch file holding a dict of 2 entries \(weights, steps\), not a "
                                              "checkpoint of this toolkit"):
        load_agent(tmp_path / "other.pt")


def test_non_atari_and_distributional_networks_are_refused_with_one_line(tmp_path):
    """SB3 MlpPolicy files (DQN and PPO, written by the real package) and CleanRL's C51 network."""
    import gymnasium as gym
    from stable_baselines3 import DQN, PPO

    for name, model in (("dqn", DQN("MlpPolicy", gym.make("CartPole-v1"), learning_starts=10, buffer_size=100)),
                        ("ppo", PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64))):
        folder = tmp_path / f"{name}_mlp"
        model.save(folder / "rl_model_100_steps")
        assert "not an image policy" in one_line_error(["analyse", str(folder), "--env", GAME])
    c51 = tmp_path / "c51"
    c51.mkdir()
    network = CleanRLQNetwork(6)
    network.network[-1] = torch.nn.Linear(512, 6 * 51)  # c51_atari: actions x atoms outputs
    torch.save({"model_weights": network.state_dict(), "args": {"env_id": "PongNoFrameskip-v4", "n_atoms": 51}},
               c51 / "c51_1000.cleanrl_model")
    assert "distributional Q-network" in one_line_error(["analyse", str(c51)])
    torch.save(network.state_dict(), c51 / "c51_1000.cleanrl_model")  # without its args
    assert "306 outputs" in one_line_error(["analyse", str(c51), "--env", GAME])


def test_a_final_model_beside_the_checkpoints_is_the_last_step_or_left_out_with_a_note(tmp_path, sb3_runs):
    from stable_baselines3 import PPO

    folder = tmp_path / "ppo"
    subprocess.run(["cp", "-r", str(sb3_runs / "ppo"), str(folder)], check=True)
    last = Run.open(folder, env=GAME).final
    PPO.load(folder / f"rl_model_{last}_steps.zip", device="cpu").save(folder / "ppo_pong")  # model.save at the end
    run = Run.open(folder, env=GAME)
    assert run.final == last and len(run.notes) == 1 and f"ppo_pong.zip left out: it is step {last}" in run.notes[0]
    (folder / f"rl_model_{last}_steps.zip").unlink()  # now the final model is the only file of that step
    run = Run.open(folder, env=GAME)
    assert run.final == last and run.checkpoint(last).name == "ppo_pong.zip" and not run.notes
    assert main(["evaluation", str(folder), "--env", GAME, "--episodes", "1", "--out", str(tmp_path / "a")]) == 0


@pytest.mark.parametrize(("pattern", "message"), [("(", "is not a regular expression"),
                                                  ("update_", "needs exactly one group"),
                                                  ("(a)(b)", "needs exactly one group"),
                                                  (r"agent_(\w+)", "not a step")])
def test_a_bad_step_pattern_is_one_line(tmp_path, pattern, message):
    torch.save(CleanRLAgent(6).state_dict(), tmp_path / "agent_500.cleanrl_model")
    torch.save(CleanRLAgent(6).state_dict(), tmp_path / "agent_abc.cleanrl_model")
    assert message in one_line_error(["analyse", str(tmp_path), "--env", GAME, "--steps-from", pattern])


def rewritten(source: Path, target: Path, **changes) -> Path:
    """A copy of an SB3 zip with members replaced: ``data`` (a dict merged into its JSON), ``policy`` (a state dict,
    or raw bytes), ``compress`` (the compression of policy.pth), ``flag_bits`` (of policy.pth)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if "data" in changes:
        members["data"] = json.dumps({**json.loads(members["data"]), **changes["data"]}).encode()
    if "policy" in changes:
        policy = changes["policy"]
        if isinstance(policy, dict):
            buffer = io.BytesIO()
            torch.save(policy, buffer)
            policy = buffer.getvalue()
        members["policy.pth"] = policy
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            if name == "policy.pth":
                info.compress_type = changes.get("compress", zipfile.ZIP_DEFLATED)
            archive.writestr(info, content)
    if changes.get("flag_bits"):  # zipfile writes its own flags: set the bit in both headers of policy.pth
        content = bytearray(target.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = -1
            while (at := content.find(signature, at + 1)) >= 0:
                name_at = at + (30 if offset == 6 else 46)
                if content[name_at:name_at + 10] == b"policy.pth":
                    content[at + offset] |= changes["flag_bits"]
        target.write_bytes(bytes(content))
    return target


def sb3_weights(sb3_runs) -> dict:
    with zipfile.ZipFile(sb3_runs / "ppo" / "rl_model_64_steps.zip") as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)


SB3_DEFECTS = [
    ("observations of 84 x 84", {"data": {"observation_space": {"_shape": [84, 84]}}}, "observations of shape"),
    ("observations of 1e7 pixels", {"data": {"observation_space": {"_shape": [4, 84, 1e7]}}}, "observations of shape"),
    ("-3 actions", {"data": {"action_space": {"n": -3}}}, "-3 actions"),
    ("many timesteps", {"data": {"num_timesteps": "many"}}, "not a step count"),
    ("encrypted policy", {"flag_bits": 0x1}, "encrypted"),
    ("bzip2 policy", {"compress": zipfile.ZIP_BZIP2}, "compressed with method 12"),
]


@pytest.mark.parametrize(("case", "changes", "words"), SB3_DEFECTS, ids=[c for c, _, _ in SB3_DEFECTS])
def test_a_malformed_sb3_file_is_one_line(tmp_path, sb3_runs, case, changes, words):
    rewritten(sb3_runs / "ppo" / "rl_model_64_steps.zip", tmp_path / "run" / "rl_model_64_steps.zip", **changes)
    assert words in one_line_error(["analyse", str(tmp_path / "run"), "--env", GAME, "--stages", "evaluation"])


def test_damaged_weights_and_extra_layers_are_refused(tmp_path, sb3_runs):
    weights = sb3_weights(sb3_runs)
    recurrent = {**weights, "lstm_actor.weight_ih_l0": torch.zeros(1024, 512), "lstm_critic.weight_ih_l0":
                 torch.zeros(1024, 512)}  # RecurrentPPO's LSTMs beside the CNN
    rewritten(sb3_runs / "ppo" / "rl_model_64_steps.zip", tmp_path / "lstm" / "rl_model_1_steps.zip", policy=recurrent)
    assert "layers this network does not have (lstm_actor" in one_line_error(["analyse", str(tmp_path / "lstm"),
                                                                              "--env", GAME])
    damaged = tmp_path / "damaged" / "rl_model_1_steps.zip"
    rewritten(sb3_runs / "ppo" / "rl_model_64_steps.zip", damaged)
    content = bytearray(damaged.read_bytes())
    start = content.find(b"policy.pth") + 200  # inside the deflated weights
    content[start:start + 64] = bytes(64)
    damaged.write_bytes(bytes(content))
    assert "damaged archive" in one_line_error(["analyse", str(damaged.parent), "--env", GAME])
    beast = TorchBeastAtariNet(6, use_lstm=False).state_dict()
    for name, state in (("no_fc", {k: v for k, v in beast.items() if not k.startswith("fc.")}),
                        ("not_tensors", {**beast, "policy.bias": [0.0] * 6})):
        folder = tmp_path / name
        folder.mkdir()
        torch.save({"model_state_dict": state, "flags": {"env": "PongNoFrameskip-v4"}}, folder / "model.tar")
        assert "AtariNet (" in one_line_error(["analyse", str(folder)])  # not a state dict of it, or not tensors


def peak_rss_mib(arguments: list[str]) -> tuple[int, str, float]:
    """Run ``interp`` in a process of its own: its exit status, stderr and peak resident memory in MiB."""
    script = ("import resource, sys\nfrom cli import main\ncode = main(sys.argv[1:])\n"
              "print(f'PEAK {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=300)
    peak = int(result.stderr.rsplit("PEAK ", 1)[1]) / 1024
    return result.returncode, result.stderr.rsplit("PEAK ", 1)[0], peak


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path, sb3_runs):
    """600 MiB of zeros deflated into ~0.6 MB: refused by its declared size, the process's memory that of a plain
    refusal (an unknown environment), not of the bomb."""
    bomb = tmp_path / "bomb" / "rl_model_1_steps.zip"
    rewritten(sb3_runs / "ppo" / "rl_model_64_steps.zip", bomb, policy=bytes(600 * 2**20))
    assert bomb.stat().st_size < 5 * 2**20
    status, error, peak = peak_rss_mib(["analyse", str(bomb.parent), "--env", GAME])
    assert status == 2 and "would inflate to 600 MiB" in error and "Traceback" not in error
    _, _, plain = peak_rss_mib(["analyse", str(sb3_runs / "ppo"), "--env", "ALE/Nope-v5"])
    assert peak < plain + 100, (peak, plain)


def test_old_format_files_load_and_evalset_takes_other_libraries_checkpoints(tmp_path):
    """TorchBeast-era torch files (the format before torch 1.6) load without mmap; `interp evalset` plays a
    TorchBeast model.tar as `interp analyse` does."""
    folder = tmp_path / "cleanrl"
    folder.mkdir()
    for step in (100, 200):
        torch.save(CleanRLAgent(6).state_dict(), folder / f"agent_{step}.cleanrl_model",
                   _use_new_zipfile_serialization=False)
    run = Run.open(folder, env=GAME)
    assert run.steps == [100, 200] and run.agent.num_actions == 6
    beast = tmp_path / "model.tar"
    torch.save({"model_state_dict": TorchBeastAtariNet(6, use_lstm=False).state_dict(),
                "flags": {"env": "PongNoFrameskip-v4"}}, beast, _use_new_zipfile_serialization=False)
    assert main(["evalset", str(beast), "--env", GAME, "--frames", "2", "--context", "2", "--out",
                 str(tmp_path / "eval.npz")]) == 0
    meta = json.loads(str(np.load(tmp_path / "eval.npz")["meta"]))
    assert meta["env_options"] == {"preprocessing": "deepmind"}
