"""Checkpoints: round trip, atomic writes, and one clear error for every kind of bad file."""

import os
import pickle
import stat

import pytest
import torch

from interp.agents import AGENTS, CheckpointError, load_agent, load_checkpoint, make_agent, save_checkpoint


def inputs(steps=2, batch=1, obs=(4, 84, 84)):
    generator = torch.Generator().manual_seed(0)
    return {"frame": torch.randint(0, 256, (steps, batch, *obs), dtype=torch.uint8, generator=generator),
            "last_action": torch.zeros(steps, batch, dtype=torch.long), "reward": torch.zeros(steps, batch),
            "done": torch.zeros(steps, batch, dtype=torch.bool)}


@pytest.mark.parametrize("name", list(AGENTS))
def test_round_trip_rebuilds_the_same_model(tmp_path, name):
    torch.manual_seed(0)
    obs = (4, 42, 42) if name == "timesformer_joint" else (4, 84, 84)
    agent = make_agent(name, obs_shape=obs, num_actions=4, scale_frames=True).eval()
    path = save_checkpoint(tmp_path / "run" / "step.pt", agent, step=1000, returns=[1.0, -2.0], env="MiniPong-v0")
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta == {"step": 1000, "returns": [1.0, -2.0], "env": "MiniPong-v0"}
    loaded = checkpoint.agent
    assert type(loaded) is type(agent) and loaded.config == agent.config and not loaded.training
    expected, _ = agent(inputs(obs=obs), agent.initial_state(1))
    actual, _ = loaded(inputs(obs=obs), loaded.initial_state(1))
    assert torch.equal(expected["policy_logits"], actual["policy_logits"])
    assert os.listdir(path.parent) == ["step.pt"]  # no temporary file left behind


def test_missing_corrupt_and_foreign_files_give_one_clear_error(tmp_path):
    agent = make_agent("baseline")
    good = save_checkpoint(tmp_path / "good.pt", agent, step=1)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_agent(tmp_path / "absent.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_agent(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_agent(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": agent.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match=r"a torch file holding a dict of 1 entries \(model\), not a checkpoint"):
        load_agent(foreign)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    path = save_checkpoint(tmp_path / "mott.pt", make_agent("mott"))
    payload = torch.load(path, weights_only=True)
    payload["agent"]["name"] = "adaptive"  # a file claiming another architecture, with Mott's config
    torch.save(payload, tmp_path / "mislabelled.pt")
    with pytest.raises(CheckpointError, match="config does not build a 'adaptive' agent"):
        load_agent(tmp_path / "mislabelled.pt")
    payload["agent"] = make_agent("adaptive").describe()  # the right config, Mott's weights
    torch.save(payload, tmp_path / "foreign_weights.pt")
    with pytest.raises(CheckpointError, match="do not fit the 'adaptive' architecture"):
        load_agent(tmp_path / "foreign_weights.pt")
    with pytest.raises(CheckpointError, match="holds a 'mott' agent, not 'baseline'"):
        load_agent(path, expected_name="baseline")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_loading_never_executes_code_from_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as file:
        pickle.dump({"format": "interp-agent-checkpoint", "agent": _Exploit()}, file)
    with pytest.raises(CheckpointError):
        load_agent(path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_metadata_that_weights_only_loading_cannot_read_is_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot be stored"):
        save_checkpoint(tmp_path / "x.pt", make_agent("baseline"), when=object())


def test_checkpoints_of_the_first_round_still_load(tmp_path):
    """Their policy and value head was called ``heads``."""
    agent = make_agent("baseline", num_actions=3)
    path = save_checkpoint(tmp_path / "old.pt", agent)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {k.replace("actor_critic.", "heads."): v for k, v in payload["state_dict"].items()}
    torch.save(payload, path)
    loaded = load_agent(path)
    assert torch.equal(loaded.actor_critic.policy.weight, agent.actor_critic.policy.weight)


def test_files_written_atomically_get_the_umasks_mode_not_mkstemps(tmp_path):
    previous = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path / "step.pt", make_agent("baseline", num_actions=3))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 under umask 027; mkstemp alone gives 0o600
