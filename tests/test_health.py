import math

import pandas as pd
import torch

from analyses.health import active_units, attention_entropy, gate_saturation, gradient_norms, plot_health, section
from analyses.stage import write_table
from interp.agents import make_agent
from interp.agents.layers import LSTMCell
from interp.runs import Environment, Run
from interp.steps import Steps


def steps_of(agent, count: int = 5, seed: int = 0) -> Steps:
    generator = torch.Generator().manual_seed(seed)
    inputs = {"frame": torch.randint(0, 256, (1, count, *agent.obs_shape), dtype=torch.uint8, generator=generator),
              "last_action": torch.randint(0, 3, (1, count), generator=generator),
              "reward": torch.randn(1, count, generator=generator), "done": torch.zeros(1, count, dtype=torch.bool)}
    return Steps(inputs, agent.initial_state(count))


def test_a_layer_with_a_very_negative_bias_has_no_active_units():
    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = steps_of(agent)
    assert active_units(agent, steps)["vision.net.0"] > 0.5
    with torch.no_grad():
        agent.vision.net[0].bias.fill_(-1e6)
    units = active_units(agent, steps)
    assert units["vision.net.0"] == 0.0
    assert set(units) == {name for name, module in agent.named_modules()
                          if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))}


def test_spatial_attention_entropy_is_one_when_uniform_and_near_zero_when_peaked():
    torch.manual_seed(0)
    agent = make_agent("mott", num_actions=3, obs_shape=(4, 42, 42)).eval()
    steps = steps_of(agent)
    last = agent.answerer.query[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()  # every query 0: equal logits on every cell
    uniform = attention_entropy(agent, steps)
    assert len(uniform) == agent.answerer.heads
    assert all(math.isclose(value, 1.0, abs_tol=1e-5) for value in uniform.values()), uniform
    with torch.no_grad():
        last.bias.normal_(0, 1e4)  # huge random queries: one cell takes all the weight
    assert all(value < 0.05 for value in attention_entropy(agent, steps).values())


def test_gate_saturation_is_zero_for_gates_at_one_half_and_one_for_gates_driven_far_out():
    agent = make_agent("mott", num_actions=3, obs_shape=(4, 42, 42), seed=0).eval()
    steps = steps_of(agent)
    cells = {name for name, module in agent.named_modules() if isinstance(module, LSTMCell)}
    assert set(gate_saturation(agent, steps)) == cells == {"conv_lstm", "core"}
    with torch.no_grad():
        for gates in (agent.conv_lstm.gates, agent.core.gates):
            gates.weight.zero_()
            gates.bias.zero_()  # every gate at sigmoid(0) = 0.5
    assert gate_saturation(agent, steps) == {"conv_lstm": 0.0, "core": 0.0}
    with torch.no_grad():
        hidden = agent.core.gates.bias.shape[0] // 4
        agent.core.gates.bias[:hidden].fill_(10.0)  # the input gates open: a third of the sigmoid gates
        agent.core.gates.bias[3 * hidden:].fill_(-10.0)  # the output gates shut: another third
    saturation = gate_saturation(agent, steps)
    assert saturation["conv_lstm"] == 0.0 and math.isclose(saturation["core"], 2 / 3)
    baseline = make_agent("baseline", num_actions=3).eval()
    assert gate_saturation(baseline, steps_of(baseline)) == {}


def test_the_health_section_names_a_saturated_cell(tmp_path):
    run = Run(tmp_path, {}, Environment("MiniPong-v0", {}))
    run.analysis.mkdir(parents=True)
    table = pd.DataFrame([(0, "conv_lstm", "gate_saturation", 0.9), (10, "conv_lstm", "gate_saturation", 0.99),
                          (10, "core", "gate_saturation", 0.2), (10, "vision.0", "active_units", 0.8)],
                         columns=["step", "module", "metric", "value"])
    write_table(run.analysis / "health.csv", table)
    plot_health(table, run.analysis / "health.png")
    html = section(run)
    assert "<b>Saturated</b>" in html and "conv_lstm (99%)" in html and "core" not in html
    write_table(run.analysis / "health.csv", table[table.module != "conv_lstm"])
    assert "Saturated" not in section(run)


def test_gradient_norms_equal_those_of_backward_on_each_module():
    torch.manual_seed(0)
    agent = make_agent("baseline", num_actions=3).eval()
    steps = steps_of(agent)
    norms = gradient_norms(agent, steps)
    outputs, _ = agent(steps.inputs, steps.state)
    outputs["baseline"][0].mean().backward()
    for name, module in agent.named_children():
        grads = [p.grad.flatten() for p in module.parameters() if p.grad is not None]
        if any(True for _ in module.parameters()):
            expected = torch.cat(grads).norm().item() if grads else 0.0
            assert math.isclose(norms["value"][name], expected, rel_tol=1e-4), name
    assert set(norms["policy"]) == set(norms["value"]) and all(value > 0 for value in norms["policy"].values())


def test_interp_analyse_writes_the_health_table_for_every_checkpoint(analysed_run):
    table = pd.read_csv(analysed_run / "analysis" / "health.csv")
    checkpoints = sorted(int(path.stem.split("_")[1]) for path in (analysed_run / "checkpoints").glob("step_*.pt"))
    assert sorted(table.step.unique()) == checkpoints
    assert set(table.metric) == {"active_units", "attention_entropy", "policy_gradient_norm", "value_gradient_norm"}
    bounded = table[table.metric.isin(["active_units", "attention_entropy"])].value
    assert bounded.between(0, 1 + 1e-6).all() and (table.value >= 0).all()
    assert (analysed_run / "analysis" / "health.png").stat().st_size > 0
