"""LRP through every agent (zennit with conservative propagation) and the ATOM metrics built on it."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from zennit import composites, rules
from zennit.types import Convolution, Linear

from cli import main
from interp.agents import AGENTS, make_agent, save_checkpoint
from interp.agents.conservative import conservative_propagation
from interp.atom import Atom
from interp.lrp import LRP, explain_outputs, make_composite
from interp.steps import Steps

SMALL = {"mott": {"vision": "convnet"}, "timesformer_divided": {"mem_len": 4}, "timesformer_joint": {"mem_len": 3},
         "adaptive": {"mem_len": 6}, "spatiotemporal": {"mem_len": 6}, "spatiotemporal_oneshot": {"mem_len": 6}}


def steps_after_history(agent, count: int = 3, history: int = 3, seed: int = 0) -> Steps:
    """``count`` random steps, each after ``history`` random steps that build the pre-step state."""
    generator = torch.Generator().manual_seed(seed)
    length = history + 1
    inputs = {"frame": torch.randint(0, 256, (length, count, 4, 84, 84), dtype=torch.uint8, generator=generator),
              "last_action": torch.randint(0, 3, (length, count), generator=generator),
              "reward": torch.randn(length, count, generator=generator).to(agent.dtype),
              "done": torch.zeros(length, count, dtype=torch.bool)}
    inputs["done"][0] = True
    state = agent.initial_state(count)
    if history:
        with torch.no_grad():
            _, state = agent({k: v[:history] for k, v in inputs.items()}, state)
    return Steps({k: v[history:] for k, v in inputs.items()}, state)


def trained_like(agent, seed: int = 0):
    """Parameters as training leaves them rather than as initialised: LayerNorm gains and biases away from 1 and 0,
    zero-initialised layers (TimeSformer's ``temporal_fc``, the distance biases) random, every bias non-zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in agent.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            if name.endswith(".weight") and parameter.dim() == 1:  # a LayerNorm's gain
                parameter.copy_(1 + 0.3 * noise)
            elif not parameter.any():
                parameter.copy_(0.3 * noise)
            elif name.endswith("bias"):
                parameter.add_(0.1 * noise)
    return agent


@pytest.mark.parametrize("name", list(AGENTS))
def test_relevance_is_accounted_for_on_every_agent(name):
    torch.manual_seed(0)
    agent = trained_like(make_agent(name, num_actions=3, **SMALL.get(name, {})).double().eval())
    steps = steps_after_history(agent)
    for target in ("actor", "critic"):
        relevance = explain_outputs(agent, steps, make_composite("epsilon"), target=target)
        assert relevance.frame.shape == (3, 4, 84, 84)
        seeded = relevance.seeded
        assert torch.allclose(relevance.total(), seeded, rtol=1e-3, atol=1e-9), (target, relevance.total(), seeded)
        assert (relevance.frame.flatten(1).abs().sum(1) > 0).all()  # the frame itself is explained
        assert (relevance.constants["stabiliser"] / seeded).abs().max() < 1e-3
    if agent.initial_state(1):  # the pre-step state takes its part, and only float state tensors are explained
        assert any(r is not None and r.abs().sum() > 0 for r in relevance.state)
    parameters = {**dict(agent.named_parameters()), **dict(agent.named_buffers())}
    assert set(relevance.constants) - {"stabiliser"} <= set(parameters)  # named as the agent names them
    constants = {"mott": "answerer.attention.basis", "spatiotemporal": "answerer.attention.basis",
                 "timesformer_divided": "position", "timesformer_joint": "position",
                 "adaptive": "core.layers.0.norm_attention.bias"}
    expected = constants.get(name.replace("_oneshot", ""), "actor_critic.baseline.bias")
    assert relevance.constants[expected].abs().sum() > 0


def test_relevance_passes_mott_s_normalisations():
    torch.manual_seed(0)
    agent = make_agent("mott", num_actions=3, vision="convnet", vision_norm=True, core_norm=True)
    agent = trained_like(agent.double().eval())
    relevance = explain_outputs(agent, steps_after_history(agent), make_composite("epsilon"))
    assert torch.allclose(relevance.total(), relevance.seeded, rtol=1e-3, atol=1e-9)
    assert relevance.constants["vision_norm.bias"].abs().sum() > 0
    assert relevance.constants["core_norm.bias"].abs().sum() > 0


@pytest.mark.parametrize("name", list(AGENTS))
@pytest.mark.parametrize("rule", ["epsilon", "zplus"])
def test_zero_biases_leaves_every_bias_without_relevance(name, rule):
    torch.manual_seed(0)
    agent = trained_like(make_agent(name, num_actions=3, **SMALL.get(name, {})).double().eval())
    relevance = explain_outputs(agent, steps_after_history(agent), make_composite(rule, zero_biases=True))
    assert not [key for key in relevance.constants if key.endswith("bias")]
    assert torch.allclose(relevance.total(), relevance.seeded, rtol=1e-3, atol=1e-9)
    if rule == "zplus":  # the epsilon rule without biases divides by pre-activations near zero (README, "LRP")
        assert (relevance.constants.get("stabiliser", 0) / relevance.seeded).abs().max() < 1e-3


@pytest.mark.parametrize("name", list(AGENTS))
def test_conservative_mode_computes_the_same_outputs(name):
    torch.manual_seed(0)
    agent = make_agent(name, num_actions=3, **SMALL.get(name, {})).eval()
    steps = steps_after_history(agent)
    with torch.no_grad():
        plain, _ = agent(steps.inputs, steps.state)
        with conservative_propagation():
            conservative, _ = agent(steps.inputs, steps.state)
    assert torch.allclose(plain["policy_logits"], conservative["policy_logits"], atol=1e-5)
    assert torch.allclose(plain["baseline"], conservative["baseline"], atol=1e-5)


def test_baseline_relevance_equals_zennits_own_lrp():
    from zennit.attribution import Gradient

    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = steps_after_history(agent, count=4, history=0)
    ours = explain_outputs(agent, steps, make_composite("epsilon_plus_flat"), target="actor")
    network = nn.Sequential(agent.vision, agent.fc, agent.actor_critic.policy)
    frames = steps.inputs["frame"][0].float()
    with torch.no_grad():
        chosen = network(frames).argmax(1)
    with Gradient(network, make_composite("epsilon_plus_flat")) as attributor:
        _, theirs = attributor(frames, lambda out: out * nn.functional.one_hot(chosen, 3))
    assert torch.allclose(ours.frame, theirs, rtol=1e-5, atol=1e-6)
    assert ours.frame.abs().sum() > 0


ZENNIT_BACKWARD = rules.ZPlus.backward


def zennits_own(rule: str):
    """The composite ``rule`` as zennit makes and registers it: its own z+ rule, its own hooks (which let autograd
    compute each layer's true gradient, then replace it)."""
    composite = {"zplus": composites.LayerMapComposite(composites.layer_map_base()
                                                       + [((Convolution, Linear), rules.ZPlus())]),
                 "epsilon_plus": composites.EpsilonPlus()}[rule]
    composite.zero_biases = False  # read by the agents' conservative operations
    return composite


@pytest.mark.parametrize("name", list(AGENTS))
@pytest.mark.parametrize("rule", ["zplus", "epsilon_plus"])
def test_our_rules_and_hooks_give_zennits_relevance_to_the_last_bit(name, rule, monkeypatch):
    torch.manual_seed(0)
    agent = trained_like(make_agent(name, num_actions=3, **SMALL.get(name, {})).eval())
    steps = steps_after_history(agent)
    theirs = explain_outputs(agent, steps, zennits_own(rule), target="actor", capture="hook_features")
    both_halves = []
    monkeypatch.setattr(rules.ZPlus, "backward", lambda *args: both_halves.append(1) or ZENNIT_BACKWARD(*args))
    ours = explain_outputs(agent, steps, make_composite(rule), target="actor", capture="hook_features")
    assert torch.equal(ours.frame, theirs.frame) and torch.equal(ours.layer, theirs.layer)
    assert ours.frame.abs().sum() > 0
    if name == "baseline":  # every layer's input is the frame or a ReLU's output: the second half never runs
        assert not both_halves


def test_lrp_maps_have_the_saliency_calling_convention():
    torch.manual_seed(0)
    agent = make_agent("timesformer_divided", num_actions=3, mem_len=4).eval()
    maps = LRP(batch_size=2).attribute(agent, steps_after_history(agent))
    assert maps["actor"].shape == (3, 84, 84) and maps["critic"].dtype == np.float32
    assert np.abs(maps["actor"]).sum() > 0


def object_masks(count: int) -> dict[str, np.ndarray]:
    masks = {name: np.zeros((count, 84, 84), dtype=bool) for name in ("ball", "enemy", "player")}
    masks["player"][:, 30:46, 76:79] = True
    masks["enemy"][:, 10:26, 4:7] = True
    masks["ball"][:, 40:42, 40:42] = True
    return masks


def test_neuron_selection_holds_the_share():
    atom = Atom(share=0.9)
    assert atom.select(torch.tensor([1.0, 5.0, 0.5, 3.0])).tolist() == [1, 3, 0]  # 9 of 9.5
    assert Atom(share=0.5).select(torch.tensor([1.0, 5.0, 0.5, 3.0])).tolist() == [1]
    assert atom.select(torch.tensor([-1.0, -2.0])).numel() == 0


def test_combinatorial_attention_follows_its_definition():
    rbar = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 0.1, 0.0], [1.0, 0.5, 0.1]])
    frame = {"neurons": torch.arange(4), "weights": torch.tensor([1.0, 2.0, 3.0, 4.0]), "rbar": rbar,
             "at_pixels": torch.ones(4), "pass1": {"seeded": 1.0, "features": 1.0, "head_bias": 0.0,
                                                   "other_head_inputs": 0.0}}
    objects = ["ball", "enemy", "player"]

    def values(table, metric):
        return table[table.metric == metric].set_index("object")["value"]

    strict = Atom().metrics([frame], objects)
    combinatorial = values(strict, "combinatorial")
    assert combinatorial["ball"] == 1.0 and combinatorial["ball+enemy"] == 2.0 and combinatorial.sum() == 3.0
    hierarchical = values(strict, "hierarchical")
    assert np.allclose(hierarchical[objects], (frame["weights"][:, None] * rbar).sum(0).numpy())
    assert np.isclose(values(strict, "hierarchical_share").sum(), 1.0)
    tolerant = values(Atom(exclusivity=0.2).metrics([frame], objects), "combinatorial")
    assert tolerant["ball"] == 4.0 and tolerant["ball+enemy"] == 6.0


@pytest.mark.parametrize("name", ["baseline", "mott", "timesformer_divided"])
def test_batched_pass_two_equals_the_per_neuron_loop(name):
    torch.manual_seed(0)
    agent = make_agent(name, num_actions=3, **SMALL.get(name, {})).eval()
    steps = steps_after_history(agent, count=2)
    masks = np.stack(list(object_masks(2).values()), axis=1)
    batched = Atom(batch_size=512).neuron_relevance(agent, steps, masks)
    loop = Atom(batch_size=1).neuron_relevance(agent, steps, masks)
    for one, other in zip(batched, loop, strict=True):
        assert torch.equal(one["neurons"], other["neurons"]) and len(one["neurons"]) > 0
        assert torch.allclose(one["rbar"], other["rbar"], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("initial", ["one", "value"])
def test_atom_on_the_baseline_matches_an_independent_zennit_computation(initial):
    """Both passes with zennit's own attributor on plain ``nn.Sequential`` pieces of the baseline, the metric in
    numpy."""
    from zennit.attribution import Gradient

    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = steps_after_history(agent, count=3, history=0)
    masks = object_masks(3)
    ours = Atom(initial_relevance=initial).compute(agent, steps, masks)

    frames = steps.inputs["frame"][0].float()
    below, above = nn.Sequential(agent.vision, agent.fc), agent.actor_critic.policy
    hierarchical = np.zeros(3)
    for i in range(3):
        with torch.no_grad():
            features = below(frames[i:i + 1])
            chosen = int(above(features).argmax())
        with Gradient(above, make_composite("zplus")) as attributor:
            one_hot = nn.functional.one_hot(torch.tensor([chosen]), 3).to(features.dtype)
            _, layer = attributor(features, lambda out, seed=one_hot: out * seed if initial == "value" else seed)
        layer = layer[0].numpy()
        order = np.argsort(-layer)
        count = int(np.searchsorted(np.cumsum(layer[order]), 0.9 * layer.sum())) + 1
        for k in order[:count]:
            with Gradient(below, make_composite("zplus")) as attributor:
                seed = torch.zeros(1, features.shape[1])
                seed[0, k] = 1.0
                _, pixels = attributor(frames[i:i + 1], seed)
            pixels = pixels[0].sum(0).numpy()
            for g, name in enumerate(sorted(masks)):
                mask = masks[name][i]
                nonzero = ((pixels != 0) & mask).sum()
                hierarchical[g] += layer[k] * (pixels[mask].sum() / nonzero if nonzero else 0.0) / 3
    values = ours[ours.metric == "hierarchical"].set_index("object")["value"]
    assert np.allclose(values[sorted(masks)].to_numpy(), hierarchical, rtol=1e-4)
    assert (hierarchical > 0).any()


def test_frames_whose_explained_logit_is_negative_are_counted_not_averaged_as_zero():
    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    with torch.no_grad():
        agent.actor_critic.policy.bias.fill_(-50.0)  # every logit negative, the policy unchanged
    steps = steps_after_history(agent, count=3, history=0)
    assert (agent(steps.inputs, steps.state)[0]["policy_logits"] < 0).all()

    def values(table, metric):
        return table[table.metric == metric].set_index("object")["value"]

    from_value = Atom(initial_relevance="value").compute(agent, steps, object_masks(3))
    assert values(from_value, "empty_selection")[""] == 3 and values(from_value, "frames")[""] == 3
    assert values(from_value, "hierarchical_share").isna().all()  # undefined, not 0
    assert np.isnan(values(from_value, "selected_neurons")[""])
    from_one = Atom().compute(agent, steps, object_masks(3))
    assert values(from_one, "empty_selection")[""] == 0 and values(from_one, "selected_neurons")[""] > 0
    assert values(from_one, "hierarchical_share").sum() == pytest.approx(1.0)
    assert 0 < values(from_one, "relevance_at_pixels")[""] <= 1.0 + 1e-6
    # z+ keeps a negative bias out of the denominators: all of the start reaches F_c
    assert values(from_one, "pass1_share")["features"] == pytest.approx(1.0)


def test_pass_one_reports_what_the_heads_other_inputs_take():
    torch.manual_seed(0)
    agent = trained_like(make_agent("timesformer_divided", num_actions=3, mem_len=4).eval())
    steps = steps_after_history(agent, count=2)
    per_frame = Atom().neuron_relevance(agent, steps, np.stack(list(object_masks(2).values()), axis=1))
    first = explain_outputs(agent, steps, Atom().composite(), initial="one")
    step_inputs = sum(value.sum(1) for value in first.step_inputs.values())  # reward and action: only at the heads
    for frame, expected in zip(per_frame, step_inputs.tolist(), strict=True):
        parts = frame["pass1"]
        assert parts["seeded"] == pytest.approx(1.0)
        assert parts["other_head_inputs"] == pytest.approx(expected, abs=1e-4) and abs(expected) > 1e-4
    baseline = make_agent("baseline", num_actions=3).eval()
    frames = Atom().neuron_relevance(baseline, steps_after_history(baseline, count=2, history=0),
                                     np.stack(list(object_masks(2).values()), axis=1))
    assert all(abs(f["pass1"]["other_head_inputs"]) < 1e-5 for f in frames)  # its heads read F_c alone


def test_atom_command_over_a_run(tmp_path, capsys):
    torch.manual_seed(0)
    run = tmp_path / "run"
    for step in (0, 1000):
        save_checkpoint(run / "checkpoints" / f"step_{step:012d}.pt", make_agent("baseline", num_actions=3),
                        env="MiniPong-TwoBall-v0", step=step, mean_return=-4.0 + step / 1000)
    evalset = tmp_path / "eval.npz"
    assert main(["evalset", str(run), "--env", "MiniPong-TwoBall-v0", "--frames", "4", "--context", "2",
                 "--out", str(evalset)]) == 0
    args = ["atom", str(run), "--evalset", str(evalset), "--methods", "gradient,perturbation"]
    assert main(args) == 0
    table = pd.read_csv(run / "analysis" / "atom.csv", keep_default_na=False)
    assert list(table.columns) == ["step", "method", "metric", "object", "value"]
    assert sorted(table.step.unique()) == [0, 1000]
    shares = table[(table.method == "atom") & (table.metric == "hierarchical_share")]
    assert set(shares.object) == {"ball", "decoy", "enemy", "player"}
    assert np.allclose(shares.groupby("step")["value"].sum(), 1.0)
    assert set(table[table.metric == "profile_share"].method) == {"gradient", "perturbation"}
    assert {"atom~gradient", "atom~perturbation", "gradient~perturbation"} <= set(table.method)
    probe = table[table.method == "probe"]
    assert set(probe.metric) == {"intercept_rate", "tracking", "mean_distance", "mean_return"}
    returns = table[(table.method == "training")].set_index("step")["value"]
    assert returns[0] == -4.0 and returns[1000] == -3.0
    assert (run / "analysis" / "atom.png").stat().st_size > 1000

    cached = sorted((run / "analysis" / "cache").glob("atom-*/step_*.csv"))
    assert len(cached) == 2
    stamps = [path.stat().st_mtime_ns for path in cached]
    save_checkpoint(run / "checkpoints" / "step_000000002000.pt", make_agent("baseline", num_actions=3),
                    env="MiniPong-TwoBall-v0", step=2000)
    assert main(args) == 0  # only the new checkpoint is computed
    assert [path.stat().st_mtime_ns for path in cached] == stamps
    assert sorted(pd.read_csv(run / "analysis" / "atom.csv").step.unique()) == [0, 1000, 2000]

    capsys.readouterr()
    assert main(["atom", str(tmp_path / "nowhere"), "--evalset", str(evalset)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    other = tmp_path / "other"
    save_checkpoint(other / "checkpoints" / "step_000000000000.pt", make_agent("baseline", num_actions=3),
                    env="MiniPong-v0", step=0)
    assert main(["atom", str(other), "--evalset", str(evalset), "--methods", ""]) == 2
    assert "played on MiniPong-TwoBall-v0, not on the run's MiniPong-v0" in capsys.readouterr().err
    assert main(["atom", str(run), "--evalset", str(evalset), "--rule", "magic"]) == 2
