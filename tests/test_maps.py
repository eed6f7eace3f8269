"""Evaluation sets and the maps of a checkpoint on them, from the command line and the library."""

import numpy as np
import pytest
import torch

from analyses.evalset import build_evalset
from analyses.maps import compute_maps
from cli import main
from interp.agents import make_agent, save_checkpoint
from interp.errors import UserError
from interp.evalset import load_evalset, pre_step_state


@pytest.fixture(scope="module")
def evalset_path(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("eval")
    checkpoint = save_checkpoint(folder / "baseline.pt", make_agent("baseline", num_actions=3), env="MiniPong-v0")
    path = folder / "eval.npz"
    assert main(["evalset", str(checkpoint), "--env", "MiniPong-TwoBall-v0", "--frames", "6", "--context", "5",
                 "--out", str(path)]) == 0
    return path


def test_evalset_holds_eligible_frames_with_history(evalset_path):
    evalset = load_evalset(evalset_path)
    assert len(evalset) == 6 and evalset.obs.shape == (6, 4, 84, 84) and evalset.rgb.shape == (6, 84, 84, 3)
    assert sorted(evalset.masks) == ["ball", "decoy", "enemy", "player"]
    stacked = np.stack([m.astype(int) for m in evalset.masks.values()])
    assert (stacked.sum(axis=0) <= 1).all() and stacked.reshape(4, 6, -1).any(axis=2).all()
    assert evalset.context["obs"].shape == (6, 5, 4, 84, 84) and evalset.context["done"][:, 0].all()
    # the context ends right before the frame: its newest frame is the frame's second newest
    assert np.array_equal(evalset.context["obs"][:, -1, -1], evalset.obs[:, -2])
    assert evalset.meta["env"] == "MiniPong-TwoBall-v0"


@pytest.mark.parametrize(("name", "horizon"), [("adaptive", 4), ("timesformer_joint", 4), ("mott", None)])
def test_pre_step_state_replays_the_context(name, horizon):
    # a one-layer memory core keeps its last mem_len inputs: the state replays that many of the context's 6 steps
    torch.manual_seed(0)
    agent = make_agent(name, num_actions=3, **({"mem_len": 4} if horizon else {})).eval()
    assert agent.state_horizon == horizon
    evalset = build_evalset(agent, "MiniPong-v0", frames=3, context=6, progress=False)
    state = pre_step_state(agent, evalset)
    one = evalset.subset(slice(1, 2))
    inputs = one.context_inputs()
    manual = agent.initial_state(1)
    with torch.no_grad():
        for t in range(6):
            _, manual = agent({k: v[t:t + 1] for k, v in inputs.items()}, manual)
    assert all(torch.allclose(a[1:2].float(), b.float(), atol=1e-5) for a, b in zip(state, manual, strict=True))


def test_maps_for_an_attention_agent(evalset_path):
    evalset = load_evalset(evalset_path)
    torch.manual_seed(0)
    agent = make_agent("timesformer_divided", num_actions=3, mem_len=4)
    maps = compute_maps(agent, evalset.subset(slice(0, 2)).steps(agent), ["perturbation", "gradient"], progress=False)
    assert maps["perturbation/actor"].shape == (2, 84, 84) and maps["gradient/critic"].shape == (2, 84, 84)
    space = maps["attention/core.layers.0.space_attention.hook_weights"]
    time = maps["attention/core.layers.0.time_attention.hook_weights"]
    assert space.shape == (2, 4, 84, 84) and time.shape == (2, 4, 5)
    assert space.min() >= 0 and np.allclose(space.max(axis=(2, 3)), 1.0)  # normalised per head (eq. 5.1)


def test_maps_command_and_its_errors(evalset_path, tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "mott.pt", make_agent("mott", num_actions=3), env="MiniPong-TwoBall-v0")
    assert main(["maps", str(checkpoint), "--evalset", str(evalset_path), "--out", str(tmp_path / "maps"),
                 "--methods", "perturbation"]) == 0
    with np.load(tmp_path / "maps" / "maps.npz") as maps:
        assert maps["perturbation/actor"].shape == (6, 84, 84)
        assert maps["attention/answerer.attention.hook_weights"].shape == (6, 4, 84, 84)
    other = save_checkpoint(tmp_path / "other.pt", make_agent("mott", num_actions=3), env="MiniPong-v0")
    assert main(["maps", str(other), "--evalset", str(evalset_path), "--out", str(tmp_path / "x")]) == 2
    assert "trained on MiniPong-v0" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable evaluation set"):
        load_evalset(tmp_path / "bad.npz")
    assert main(["maps", str(checkpoint), "--evalset", str(evalset_path), "--out", str(tmp_path / "y"),
                 "--methods", "telepathy"]) == 2


def test_video_command_writes_titled_panels(tmp_path):
    import imageio.v2 as imageio

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "st.pt", make_agent("spatiotemporal", num_actions=3, mem_len=4),
                                 env="MiniPong-v0")
    out = tmp_path / "video.mp4"
    assert main(["video", str(checkpoint), "--env", "MiniPong-v0", "--frames", "4", "--out", str(out),
                 "--png-every", "2"]) == 0
    reader = imageio.get_reader(out)
    frames = [frame for frame in reader]  # noqa: C416 (list() asks len(), which is inf for ffmpeg readers)
    assert len(frames) == 4 and reader.get_meta_data()["codec"] == "h264"
    # frame, 4 spatial heads, the temporal strip, actor and critic saliency: 8 panels of 252 pixels
    assert frames[0].shape[1] == 8 * 252
    assert sorted(p.name for p in tmp_path.glob("video_*.png")) == ["video_00000.png", "video_00002.png"]


def test_a_state_that_feeds_back_into_the_core_is_replayed_whole():
    assert make_agent("spatiotemporal", num_actions=3).state_horizon is None  # the query loop
    assert make_agent("timesformer_divided", num_actions=3, layers=2).state_horizon is None
    assert make_agent("timesformer_divided", num_actions=3, mem_len=5).state_horizon == 5
