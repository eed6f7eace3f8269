"""Saliency: batched perturbation equals the one-at-a-time loop; every method runs on every kind of agent."""

import dataclasses

import numpy as np
import pytest
import torch

from interp.agents import make_agent
from interp.envs import make_env
from interp.saliency import METHODS, Perturbation
from interp.steps import Steps


def minipong_steps(agent, frames=2, context=6, seed=0):
    """Real MiniPong frames: ``context`` steps replayed into the agent's state, then ``frames`` evaluated steps."""
    env = make_env("MiniPong-v0", seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset()
    history = []
    for _ in range(context + frames):
        action = int(rng.integers(3))
        history.append((obs, action))
        obs, *_ = env.step(action)
    observations = torch.from_numpy(np.stack([o for o, _ in history]))  # [C + F, 4, 84, 84]
    actions = torch.tensor([0] + [a for _, a in history[:-1]])

    def inputs(window):
        return {"frame": observations[window][:, None], "last_action": actions[window][:, None],
                "reward": torch.zeros(len(observations[window]), 1),
                "done": torch.arange(len(observations))[window][:, None] == 0}

    agent.eval()
    step_inputs, states = [], []
    with torch.no_grad():
        for index in range(context, context + frames):
            _, state = agent(inputs(slice(0, index)), agent.initial_state(1))
            states.append(state)
            step_inputs.append(inputs(slice(index, index + 1)))
    batched_inputs = {k: torch.cat([s[k] for s in step_inputs], dim=1) for k in step_inputs[0]}
    return Steps(batched_inputs, tuple(torch.cat(parts) for parts in zip(*states, strict=True)))


@pytest.mark.parametrize("name", ["mott", "adaptive"])
def test_batched_perturbation_equals_the_one_at_a_time_loop(name):
    torch.manual_seed(0)
    # float64, so that the comparison measures the batching, not float32 rounding of tiny score differences
    agent = make_agent(name, num_actions=3, **({"mem_len": 4} if name == "adaptive" else {})).double()
    steps = minipong_steps(agent)
    method = Perturbation(stride=10, batch_size=40)  # several forward passes per frame
    batched = method.attribute(agent, steps)
    looped = method.attribute_one_at_a_time(agent, steps)
    for target in ("actor", "critic"):
        assert batched[target].shape == (2, 84, 84)
        assert batched[target].max() > 0
        np.testing.assert_allclose(batched[target], looped[target], rtol=1e-5, atol=1e-5 * batched[target].max())


def test_perturbation_grid_and_masks_are_aligned_with_the_frame():
    method = Perturbation()
    assert method.centres(84).tolist() == list(range(0, 84, 5))  # 17 points, the first on pixel 0
    masks = method.masks(84)
    assert masks.shape == (17 * 17, 84, 84)
    peak = divmod(int(masks[18].argmax()), 84)  # the second row, second column of centres
    assert peak == (5, 5) and masks[18].max() == pytest.approx(1.0)
    grid = torch.zeros(17, 17)
    grid[3, 7] = 1.0
    upsampled = method.upsample(grid, 84)
    assert divmod(int(upsampled.argmax()), 84) == (15, 35)  # a grid point lands on its own pixel


def test_a_blob_the_policy_depends_on_is_where_the_saliency_is():
    """A baseline agent whose logits read only a patch of the frame: the saliency peaks on that patch."""
    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = minipong_steps(agent, frames=1)
    region = torch.zeros(4, 84, 84)
    region[:, 60:70, 20:30] = 1.0

    def only_the_region(inputs, state):
        frame = inputs["frame"].float()
        signal_ = (frame * region).sum(dim=(2, 3, 4)) / 100.0
        logits = torch.stack([signal_, -signal_, signal_ * 0], dim=-1)
        return {"policy_logits": logits, "baseline": signal_, "action": logits.argmax(-1)}, ()

    agent.forward = only_the_region
    steps.inputs["frame"][..., 60:70, 20:30] = 200
    maps = Perturbation().attribute(agent, steps)
    for target in ("actor", "critic"):
        row, col = divmod(int(maps[target][0].argmax()), 84)
        assert 55 <= row <= 75 and 15 <= col <= 35, (target, row, col)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "smoothgrad", "occlusion"])
@pytest.mark.parametrize("name", ["baseline", "mott", "timesformer_divided"])
def test_captum_methods_run_on_every_kind_of_agent(method, name):
    torch.manual_seed(0)
    options = {"mem_len": 4} if name == "timesformer_divided" else {}
    agent = make_agent(name, num_actions=3, **options)
    steps = minipong_steps(agent, frames=1, context=3)
    if method in ("integrated_gradients", "smoothgrad"):
        chosen = METHODS[method].__class__(method, METHODS[method].kind, steps=4, samples=3)
    else:
        chosen = METHODS[method]
    maps = chosen.attribute(agent, steps)
    for target in ("actor", "critic"):
        assert maps[target].shape == (1, 84, 84) and np.isfinite(maps[target]).all()
        assert maps[target].max() > 0


def test_every_method_gives_the_same_maps_twice_whatever_the_global_rng():
    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = minipong_steps(agent, frames=2, context=2)
    for name, method in METHODS.items():
        if name in ("integrated_gradients", "occlusion"):
            continue  # deterministic by construction and slow; smoothgrad is the one that draws noise
        torch.manual_seed(1)
        first = method.attribute(agent, steps)
        torch.manual_seed(2)
        second = method.attribute(agent, steps)
        for target in ("actor", "critic"):
            assert np.array_equal(first[target], second[target]), (name, target)
    noisy = METHODS["smoothgrad"].attribute(agent, steps)["actor"]
    other_seed = dataclasses.replace(METHODS["smoothgrad"], seed=1).attribute(agent, steps)["actor"]
    assert not np.array_equal(noisy, other_seed)


def test_smoothgrad_equals_captums_noise_tunnel_drawing_the_same_noise():
    # ours explains two frames per pass (their noisy copies in one batch); captum's NoiseTunnel one frame at a time
    from captum.attr import NoiseTunnel, Saliency

    from interp.steps import StepFunction

    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = minipong_steps(agent, frames=3)
    method = dataclasses.replace(METHODS["smoothgrad"], batch_size=2 * METHODS["smoothgrad"].samples)
    before = torch.random.get_rng_state()
    ours = method.attribute(agent, steps)["actor"]
    assert torch.equal(torch.random.get_rng_state(), before)  # our noise comes from a generator of its own
    for index in range(3):
        function = StepFunction(agent, steps.one(index))
        frame = steps.inputs["frame"][0, index:index + 1].float()
        action = int(function(frame)[0].argmax(-1))
        torch.manual_seed(method.seed + index)  # the global generator in the state of ours for this frame
        theirs = NoiseTunnel(Saliency(lambda x, f=function: f(x)[0])).attribute(
            frame.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=method.samples,
            stdevs=method.noise * 255.0, abs=True, target=action)
        assert np.allclose(ours[index], theirs.detach().abs().sum(dim=1)[0].numpy(), rtol=1e-5, atol=1e-8), index
