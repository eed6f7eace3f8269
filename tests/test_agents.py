"""Agent zoo: one interface for every architecture, and the faithfulness of its attention."""

import math

import pytest
import torch
from torch import nn

from interp.agents import AGENTS, make_agent
from interp.agents.layers import ImpalaResNet, channels_last, spatial_basis
from interp.agents.transformer import CoreSteps, transformer_xl_core
from interp.errors import UserError
from interp.hooks import hook_points, record_attention

SMALL_OBS = {"timesformer_joint": (4, 42, 42)}
MEMORY_OPTIONS = {"mem_len": 4, "chunk_size": 5}  # a window shorter than the sequences below, several chunks
WITH_MEMORY = {name for name, cls in AGENTS.items() if "mem_len" in cls.Config.__dataclass_fields__}
# the thesis's attention agents; the baseline and atarinet (TorchBeast's network, for imports) have no attention
WITH_ATTENTION = [name for name in AGENTS if name not in ("baseline", "atarinet")]


def build(name, **config):
    torch.manual_seed(0)
    options = {**(MEMORY_OPTIONS if name in WITH_MEMORY else {}), **config}
    return make_agent(name, obs_shape=SMALL_OBS.get(name, (4, 84, 84)), num_actions=6, **options).eval()


def random_inputs(agent, steps, batch, seed=0, done_at=()):
    generator = torch.Generator().manual_seed(seed)
    done = torch.zeros(steps, batch, dtype=torch.bool)
    for t in done_at:
        done[t] = True
    return {
        "frame": torch.randint(0, 256, (steps, batch, *agent.obs_shape), dtype=torch.uint8, generator=generator),
        "last_action": torch.randint(0, 6, (steps, batch), generator=generator),
        "reward": torch.randn(steps, batch, generator=generator),
        "done": done,
    }


def step_slice(inputs, t):
    return {key: value[t:t + 1] for key, value in inputs.items()}


@pytest.mark.parametrize("name", list(AGENTS))
def test_interface_shapes(name):
    agent = build(name)
    inputs = random_inputs(agent, steps=3, batch=2)
    outputs, state = agent(inputs, agent.initial_state(2))
    assert outputs["policy_logits"].shape == (3, 2, 6)
    assert outputs["baseline"].shape == (3, 2) and outputs["action"].shape == (3, 2)
    assert all(s.shape[0] == 2 for s in state)  # state tensors are batch-first
    assert set(agent.extra_inputs) <= set(outputs)
    agent.train()
    sampled, _ = agent(inputs, agent.initial_state(2))
    assert ((sampled["action"] >= 0) & (sampled["action"] < 6)).all()


def test_exactly_the_attention_agents_have_attention_hook_points():
    assert [name for name in AGENTS if hook_points(build(name), ("attention",))] == WITH_ATTENTION


@pytest.mark.parametrize("name", WITH_ATTENTION)
def test_attention_weights_are_distributions(name):
    agent = build(name)
    with record_attention(agent) as attention:
        agent(random_inputs(agent, steps=6, batch=2, done_at=(3,)), agent.initial_state(2))
    assert attention and all(record.tensors for record in attention.values())
    for record in attention.values():  # [B, heads, h, w] spatial, else [B, groups, heads, queries, keys]
        for weights in record.tensors:
            assert (weights >= 0).all()
            total = weights.sum(dim=(-2, -1) if record.layout == "spatial" else -1)
            assert torch.allclose(total, torch.ones_like(total), atol=1e-5), record.name


@pytest.mark.parametrize("name", list(AGENTS))
def test_causality_outputs_ignore_the_future(name):
    agent = build(name)
    inputs = random_inputs(agent, steps=8, batch=2, seed=1)
    changed = random_inputs(agent, steps=8, batch=2, seed=2)
    for key in inputs:
        changed[key][:4] = inputs[key][:4]
    first, _ = agent(inputs, agent.initial_state(2))
    second, _ = agent(changed, agent.initial_state(2))
    assert torch.allclose(first["policy_logits"][:4], second["policy_logits"][:4], atol=1e-6)
    assert torch.allclose(first["baseline"][:4], second["baseline"][:4], atol=1e-6)
    assert not torch.allclose(first["policy_logits"][4:], second["policy_logits"][4:])


@pytest.mark.parametrize("name", list(AGENTS))
def test_stepping_equals_one_call_over_the_sequence(name):
    agent = build(name)
    steps = 12
    inputs = random_inputs(agent, steps=steps, batch=3, seed=3, done_at=(0,))
    inputs["done"][7, 1] = True  # an episode boundary inside the sequence for one environment
    state = agent.initial_state(3)
    stepped = []
    with torch.no_grad():
        for t in range(steps):
            outputs, state = agent(step_slice(inputs, t), state)
            stepped.append(outputs)
        whole, whole_state = agent(inputs, agent.initial_state(3))
    for key in ("policy_logits", "baseline"):
        assert torch.allclose(torch.cat([o[key] for o in stepped]), whole[key], atol=1e-5), key
    for carried, final in zip(state, whole_state, strict=True):
        assert torch.allclose(carried.float(), final.float(), atol=1e-5)
    for key in agent.extra_inputs:  # the one-shot learner's parallel path replays what the actor saw
        recorded = torch.cat([o[key] for o in stepped])
        with torch.no_grad():
            replayed, _ = agent({**inputs, key: recorded}, agent.initial_state(3))
        assert torch.allclose(replayed["policy_logits"], whole["policy_logits"], atol=1e-5)


def test_core_steps_equal_calling_the_core_per_step_with_gradients():
    """The sequential loop's core, its memory projected once: the same outputs, state and gradients (to the inputs
    and every weight) as calling the core per step, for two layers and a window shorter than the sequence."""
    torch.manual_seed(0)
    core = transformer_xl_core(dim=8, layers=2, heads=2, inner_dim=16, mem_len=3, gating=True)
    memory, valid = torch.randn(2, 2, 3, 8), torch.tensor([[False, True, True], [True, True, True]])
    done = torch.zeros(7, 2, dtype=torch.bool)
    done[4, 1] = True

    def run(stepwise: bool):
        x = torch.randn(7, 2, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        core.zero_grad()
        outputs, state = [], (memory, valid)
        steps = CoreSteps(core, *state) if stepwise else None
        for t in range(7):
            if stepwise:
                outputs.append(steps(x[t], done[t]))
            else:
                output, *state = core(x[t:t + 1], done[t:t + 1], *state)
                outputs.append(output[0])
        outputs = torch.stack(outputs)
        outputs.square().sum().backward()
        state = (steps.memory, steps.valid) if stepwise else state
        return outputs, state, x.grad, {name: p.grad.clone() for name, p in core.named_parameters()}

    (stepped, stepped_state, stepped_x, stepped_weights), (called, called_state, called_x, called_weights) = (
        run(True), run(False))
    assert torch.allclose(stepped, called, atol=1e-6) and torch.allclose(stepped_x, called_x, atol=1e-6)
    assert torch.allclose(stepped_state[0], called_state[0]) and torch.equal(stepped_state[1], called_state[1])
    assert stepped_weights.keys() == called_weights.keys()
    for name, grad in called_weights.items():
        assert grad.abs().sum() > 0 and torch.allclose(stepped_weights[name], grad, atol=1e-5), name


def test_episode_start_resets_memory():
    agent = build("adaptive")
    inputs = random_inputs(agent, steps=6, batch=1, seed=4)
    inputs["done"][3] = True
    with torch.no_grad():
        whole, _ = agent(inputs, agent.initial_state(1))
        fresh, _ = agent(step_slice_range(inputs, 3, 6), agent.initial_state(1))
    assert torch.allclose(whole["policy_logits"][3:], fresh["policy_logits"], atol=1e-5)


def step_slice_range(inputs, start, stop):
    return {key: value[start:stop] for key, value in inputs.items()}


def test_spatial_basis_is_thesis_equation_3_2():
    height, width = 11, 9
    basis = spatial_basis(height, width)
    assert basis.shape == (64, height, width)
    i = torch.arange(height, dtype=torch.float32)[:, None]
    j = torch.arange(width, dtype=torch.float32)[None, :]
    for u in range(1, 5):
        for v in range(1, 5):
            expected = torch.cos(math.pi * u * i / height) * torch.cos(math.pi * v * j / width)
            assert torch.allclose(basis[(u - 1) * 8 + (v - 1)], expected, atol=1e-6)
            odd = torch.sin(math.pi * u * i / height) * torch.sin(math.pi * v * j / width)
            assert torch.allclose(basis[(u + 3) * 8 + (v + 3)], odd, atol=1e-6)


def hand_set_spatial_agent(name, inputs):
    """Positive vision weights make features grow with the brightness in their receptive field; key channel 0
    sums the features at its own location, scaled so that its largest value on ``inputs`` is 1 (the ConvLSTM's
    tanh does not saturate); the query looks only at key channel 0."""
    agent = build(name, scale_frames=True)
    with torch.no_grad():
        for module in agent.modules():
            if isinstance(module, ImpalaResNet):
                for conv in module.modules():
                    if isinstance(conv, nn.Conv2d):
                        conv.weight.fill_(0.01)
                        conv.bias.zero_()
        scale = 1.0 / float(agent.vision(agent.frames(inputs)).sum(dim=1).max())
        if name == "mott":
            gates = agent.conv_lstm.gates
            hidden = gates.out_channels // 4
            gates.weight.zero_()
            gates.bias.zero_()
            gates.bias[:hidden] = 10.0  # input gate open
            gates.bias[3 * hidden:] = 10.0  # output gate open
            gates.weight[2 * hidden, :agent.vision.out_channels, 1, 1] = scale  # candidate of channel 0
        else:
            agent.keys_values.weight.zero_()
            agent.keys_values.bias.zero_()
            agent.keys_values.weight[0] = scale
        last = agent.answerer.query[-1]
        last.weight.zero_()
        query = torch.zeros(agent.answerer.heads, agent.answerer.query_size)
        query[:, 0] = 1000.0
        last.bias.copy_(query.flatten())
    return agent


@pytest.mark.parametrize("name", ["mott", "spatiotemporal", "spatiotemporal_oneshot"])
@pytest.mark.parametrize("row, col", [(10, 70), (70, 10), (40, 60), (75, 75)])
def test_bright_blob_moves_the_attention_argmax_to_its_location(name, row, col):
    inputs = random_inputs(build(name), steps=1, batch=1)
    inputs["frame"].zero_()
    inputs["frame"][..., row - 3:row + 3, col - 3:col + 3] = 255
    agent = hand_set_spatial_agent(name, inputs)
    with record_attention(agent) as attention, torch.no_grad():
        agent(inputs, agent.initial_state(1))
    weights = attention["answerer.attention.hook_weights"].tensors[0][0, 0]  # [h, w]
    cell = 84 / weights.shape[-1]
    peak = divmod(int(weights.argmax()), weights.shape[-1])
    assert abs(peak[0] - row // cell) <= 1 and abs(peak[1] - col // cell) <= 1, (peak, row // cell, col // cell)
    assert weights.max() > 0.5


@pytest.mark.parametrize("name", ["spatiotemporal", "spatiotemporal_oneshot"])
def test_the_query_loop_stays_bounded_when_its_weights_grow(name):
    """Core output -> queries -> answer -> core output is a loop over a whole episode; with the query and answer
    MLPs' weights tripled, the unnormalised loop reached inf within 13 steps of ALE Pong (see the module's doc)."""
    agent = build(name, scale_frames=True)
    with torch.no_grad():
        for layer in (*agent.answerer.query[::2], *agent.answerer.answer[::2]):
            layer.weight.mul_(3.0)
        inputs, state = random_inputs(agent, steps=120, batch=1), agent.initial_state(1)
        norms = []
        for t in range(120):
            _, state = agent(step_slice(inputs, t), state)
            norms.append(state[-1].norm().item())
    assert max(norms[60:]) < 2 * max(norms[:10]), (norms[:10], norms[-10:])


def saturated_gates(agent, cell, gates: slice = slice(None)) -> float:
    """The fraction of ``cell``'s sigmoid pre-activations (``gates`` of them along dim 1) below 0.02 or above 0.98
    over 8 random steps."""
    outputs = []
    handle = cell.register_forward_hook(lambda module, args, output: outputs.append(output))
    with torch.no_grad():
        agent(random_inputs(agent, steps=8, batch=3), agent.initial_state(3))
    handle.remove()
    values = torch.sigmoid(torch.cat(outputs)[:, gates])
    return float(((values < 0.02) | (values > 0.98)).float().mean())


def test_vision_norm_keeps_mott_s_conv_lstm_gates_unsaturated():
    """With the Pong preset's initialisation and frame scaling, the ResNet's features saturate most of the
    ConvLSTM's gates at initialisation (mott's second Pong seed lost its gradient to the frame so,
    ``docs/study/pong``); layer-normalised, none are."""
    saturated = {}
    for norm in (False, True):
        agent = build("mott", init="orthogonal", scale_frames=True, vision_norm=norm)
        saturated[norm] = saturated_gates(agent, agent.conv_lstm.gates)
    assert saturated[False] > 0.5 and saturated[True] < 0.01, saturated


def test_core_norm_keeps_mott_s_lstm_gates_unsaturated_when_the_answers_grow():
    """With ``vision_norm`` alone the answer network's output grew ~30x in training on Pong until the LSTM's gates
    saturated (``docs/study/pong``); layer-normalised, that output's scale does not reach them."""
    saturated = {}
    for norm in (False, True):
        agent = build("mott", init="orthogonal", scale_frames=True, vision_norm=True, core_norm=norm)
        with torch.no_grad():
            agent.answerer.answer[-2].weight.mul_(30.0)
        saturated[norm] = saturated_gates(agent, agent.core.gates, slice(0, agent.config.core))  # the input gates
    assert saturated[False] > 0.3 and saturated[True] < 0.01, saturated


THESIS_PARAMETERS = {"mott": 2.18e6, "adaptive": 1.92e6, "spatiotemporal": 1.95e6, "spatiotemporal_oneshot": 1.95e6,
                     "timesformer_divided": 0.56e6, "timesformer_joint": 0.56e6}


@pytest.mark.parametrize("name", list(THESIS_PARAMETERS))
def test_parameter_counts_match_the_thesis(name):
    agent = make_agent(name, obs_shape=(4, 84, 84), num_actions=6)
    count = sum(p.numel() for p in agent.parameters())
    assert abs(count / THESIS_PARAMETERS[name] - 1) <= 0.25, count


def test_joint_at_42x42_matches_the_thesis():
    agent = make_agent("timesformer_joint", obs_shape=(4, 42, 42), num_actions=6)
    assert abs(sum(p.numel() for p in agent.parameters()) / 0.22e6 - 1) <= 0.25


@pytest.mark.parametrize(("options", "frame", "grid"), [
    ({"patch_embedding": "convnet"}, 84, (9, 9)),
    ({"patch_embedding": "resnet", "resnet_channels": [8, 16, 16]}, 42, (6, 6)),
    ({"patch_embedding": "conv", "patch_size": 7}, 42, (6, 6)),
])
def test_timesformer_patch_embeddings_set_the_attention_grid(options, frame, grid):
    agent = make_agent("timesformer_divided", obs_shape=(4, frame, frame), num_actions=6, mem_len=2, **options)
    assert agent.grid == grid
    outputs, _ = agent(random_inputs(agent, 2, 1), agent.initial_state(1))
    assert outputs["policy_logits"].shape == (2, 1, 6)
    if "resnet_channels" in options:
        assert agent.patch_embed[0].out_channels == 16


def test_mott_convnet_vision_and_bad_options():
    agent = make_agent("mott", vision="convnet")
    outputs, _ = agent(random_inputs(agent, 2, 1), agent.initial_state(1))
    assert outputs["policy_logits"].shape == (2, 1, 6)
    with pytest.raises(UserError, match="unknown architecture 'mot'.*'mott'"):
        make_agent("mot")
    with pytest.raises(UserError, match="mem_len"):
        make_agent("mott", mem_len=3)
    with pytest.raises(UserError, match="vision"):
        make_agent("mott", vision="vit")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bfloat16, torch.float16, torch.float32, torch.int64])
@pytest.mark.parametrize("shape", [(1, 4, 84, 84), (7, 4, 5, 3), (3, 1, 4, 4), (2, 600, 3, 3), (2, 3, 1, 1),
                                   (0, 4, 84, 84), (2, 4, 0, 5)])
def test_channels_last_keeps_every_bit(dtype, shape):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 100).to(dtype)
    if dtype == torch.float32 and x.numel() >= 4:  # NaN, signed zero, infinity and a subnormal travel unchanged
        x.view(-1)[:4] = torch.tensor([float("nan"), -0.0, float("inf"), 1e-40])
    y = channels_last(x)
    assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y.contiguous().flatten().view(torch.uint8), x.flatten().view(torch.uint8))


def test_channels_last_keeps_gradients_and_views():
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    channels_last(x * 2).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    strided = torch.randn(2, 8, 6, 6)[:, ::2]
    assert torch.equal(channels_last(strided), strided)


def test_record_attention_metadata_and_cleanup():
    agent = build("timesformer_divided")
    inputs = random_inputs(agent, steps=3, batch=1)
    with record_attention(agent) as attention:
        agent(inputs, agent.initial_state(1))
    time = attention["core.layers.0.time_attention.hook_weights"]
    assert time.grid == (11, 11) and time.patch_size == pytest.approx(84 / 11)
    assert time.key_offsets().tolist() == [-4, -3, -2, -1, 0, 1, 2]  # 4 memory frames, then the 3 current ones
    points = hook_points(agent)
    assert all(not point._forward_hooks for point in points.values())
    with pytest.raises(RuntimeError), record_attention(agent):
        raise RuntimeError("boom")
    assert all(not point._forward_hooks for point in points.values())
