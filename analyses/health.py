"""The network's health across training: which units are alive, how sharp its attention is, which modules move its
outputs. An agent that does not learn, or unlearns, usually shows why here: a first layer whose units never fire,
attention that stays uniform or collapses onto one key, a module the outputs stopped depending on.

``RUN_DIR/analysis/health.csv`` is tidy: ``step, module, metric, value``, over the first ``frames`` frames of the
evaluation set, with ``metric``:

- ``active_units``: per convolution and linear layer (``module`` its dotted name), the fraction of its output
  units (channels, features) that are positive on at least one frame at one position. Where a ReLU follows the
  layer (the vision network, the MLPs' hidden layers) the others are dead: they pass nothing and learn nothing.
- ``attention_entropy``: per attention hook and head (``<hook name>/h<i>``), the entropy of the head's weights over
  its keys divided by the log of the number of keys, averaged over frames, queries and groups: 1 is uniform, 0 is
  all weight on one key.
- ``policy_gradient_norm`` and ``value_gradient_norm``: per top-level module with parameters, the L2 norm of the
  gradient, with respect to its parameters, of the greedy action's log-probability and of the value, each averaged
  over the frames: how much the module can still move the agent's outputs.
- ``gate_saturation``: per LSTM and ConvLSTM cell, the fraction of its sigmoid gates (input, forget, output, over
  units, positions and frames) below ``SATURATED`` or above ``1 - SATURATED``. A saturated gate passes almost no
  gradient: when most of a cell's gates are, what lies before it stops learning (mott's second Pong seed,
  ``docs/study/pong``).

``analysis/health.png`` plots each against the training step.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from analyses import page, plots
from analyses.stage import Job, Stage, load_result, write_table
from interp.agents.layers import LSTMCell
from interp.errors import UserError
from interp.hooks import record_attention
from interp.runs import Run
from interp.steps import Steps

COLUMNS = ("step", "module", "metric", "value")
DEAD_BELOW = 0.1
"""a layer with fewer active units than this at the final checkpoint is named in the report"""
SATURATED = 0.02
"""a sigmoid gate closer than this to 0 or 1 is saturated (its derivative below ~0.02)"""
SATURATED_CELL = 0.5
"""a cell with more of its sigmoid gates saturated than this at the final checkpoint is named in the report"""


@dataclass(frozen=True)
class HealthOptions:
    frames: int = 32
    """frames of the evaluation set used (the first ones)"""

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise UserError(f"health needs frames >= 1, got {self.frames}")


def run_hooked(agent: nn.Module, steps: Steps, hooks: dict) -> None:
    """The agent's forward pass on the steps, without gradients, with ``hooks`` (module -> forward hook) registered
    for its duration."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks.items()]
    try:
        with torch.no_grad():
            agent(steps.inputs, steps.state)
    finally:
        for handle in handles:
            handle.remove()


def active_units(agent: nn.Module, steps: Steps) -> dict[str, float]:
    """Per convolution and linear layer, the fraction of output units positive somewhere on the steps."""
    layers = {name: module for name, module in agent.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}
    fired: dict[str, torch.Tensor] = {}

    def record(name: str, module: nn.Module, inputs, output: torch.Tensor) -> None:
        units = output.movedim(1, -1) if isinstance(module, nn.Conv2d) else output  # units last
        positive = (units > 0).reshape(-1, units.shape[-1]).any(dim=0)
        fired[name] = positive | fired[name] if name in fired else positive

    run_hooked(agent, steps, {module: lambda m, i, o, name=name: record(name, m, i, o)
                              for name, module in layers.items()})
    return {name: float(positive.float().mean()) for name, positive in fired.items()}


def attention_entropy(agent: nn.Module, steps: Steps) -> dict[str, float]:
    """Per attention hook and head, the mean normalised entropy of its weights over the keys."""
    with record_attention(agent) as records, torch.no_grad():
        agent(steps.inputs, steps.state)
    entropies = {}
    for name, record in records.items():
        weights = record.tensors[-1].float()
        if record.layout == "spatial":  # [N, heads, h, w]
            weights = weights.flatten(2)
        else:  # [N, groups, heads, queries, keys]
            weights = weights.movedim(2, 1).flatten(2, -2)
        scale = math.log(weights.shape[-1]) if weights.shape[-1] > 1 else 1.0  # one key: entropy 0
        entropy = torch.special.entr(weights).sum(-1) / scale
        per_head = entropy.movedim(1, 0).reshape(entropy.shape[1], -1).mean(dim=1)
        entropies.update({f"{name}/h{head}": float(value) for head, value in enumerate(per_head)})
    return entropies


def saturated_gates(pre: torch.Tensor) -> torch.Tensor:
    """An LSTM cell's gate pre-activations ``[N, 4 * H, ...]`` (input, forget, cell, output, as ``nn.LSTMCell``) ->
    a boolean ``[N, 3 * H, ...]``: which of its sigmoid gates are saturated."""
    i, f, _, o = pre.float().chunk(4, dim=1)
    gates = torch.sigmoid(torch.cat([i, f, o], dim=1))
    return (gates < SATURATED) | (gates > 1 - SATURATED)


def gate_saturation(agent: nn.Module, steps: Steps) -> dict[str, float]:
    """Per LSTM and ConvLSTM cell (:class:`LSTMCell`), the fraction of its sigmoid gates saturated on the steps."""
    cells = {name: module for name, module in agent.named_modules() if isinstance(module, LSTMCell)}
    counts: dict[str, list[int]] = {name: [0, 0] for name in cells}  # saturated, all; a cell may run many times

    def record(name: str, pre: torch.Tensor) -> None:
        saturated = saturated_gates(pre)
        counts[name][0] += int(saturated.sum())
        counts[name][1] += saturated.numel()

    run_hooked(agent, steps, {cell.gates: lambda m, i, output, name=name: record(name, output)
                              for name, cell in cells.items()})
    return {name: saturated / total for name, (saturated, total) in counts.items() if total}


def gradient_norms(agent: nn.Module, steps: Steps) -> dict[str, dict[str, float]]:
    """``policy`` and ``value`` -> per top-level module with parameters, the norm of the gradient of the mean greedy
    log-probability (of the mean value) with respect to the module's parameters."""
    modules = {name: list(module.parameters()) for name, module in agent.named_children()
               if any(True for _ in module.parameters())}
    parameters = [p for group in modules.values() for p in group]
    with torch.enable_grad():
        outputs, _ = agent(steps.inputs, steps.state)
        objectives = {"policy": outputs["policy_logits"][0].float().log_softmax(-1).max(-1).values.mean(),
                      "value": outputs["baseline"][0].float().mean()}
        norms = {}
        for output, objective in objectives.items():
            grads = iter(torch.autograd.grad(objective, parameters, retain_graph=True, allow_unused=True))
            norms[output] = {name: float(torch.nn.utils.get_total_norm(
                [grad for grad in (next(grads) for _ in group) if grad is not None]))
                for name, group in modules.items()}
    return norms


def compute(job: Job) -> pd.DataFrame:
    _, loaded, steps = job.evaluation(slice(0, job.options.frames))
    agent = loaded.agent
    rows = [("active_units", active_units(agent, steps)), ("attention_entropy", attention_entropy(agent, steps)),
            *((f"{output}_gradient_norm", norms) for output, norms in gradient_norms(agent, steps).items()),
            ("gate_saturation", gate_saturation(agent, steps))]
    return pd.DataFrame([(job.step, module, metric, value) for metric, values in rows
                         for module, value in values.items()], columns=list(COLUMNS))


def finish(run: Run, results: dict[int, Path], options: HealthOptions) -> None:
    table = pd.concat([load_result(path) for _, path in sorted(results.items())], ignore_index=True)
    write_table(run.analysis / "health.csv", table)
    plot_health(table, run.analysis / "health.png", title=run.name)


def plot_health(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Active units (mean over each top-level module's layers), attention entropy per head, the policy's gradient
    norm per module and, for agents with LSTM cells, each cell's saturated gates, against the step."""
    panels = [("active_units", "active units (mean over layers)", False),
              ("attention_entropy", "attention entropy / log(keys)", False),
              ("policy_gradient_norm", "gradient norm of log pi(greedy)", True)]
    if (table.metric == "gate_saturation").any():
        panels.append(("gate_saturation", "LSTM cells: sigmoid gates saturated", False))
    figure, axes = plots.figure(4.3 * len(panels), 3.4, 1, len(panels))
    for axis, (metric, label, log_scale) in zip(axes, panels, strict=True):
        rows = table[table.metric == metric]
        group = rows.module if metric in ("attention_entropy", "gate_saturation") else rows.module.str.split(".").str[0]
        for name, curve in rows.groupby(group)["value"]:
            means = curve.groupby(rows.loc[curve.index, "step"]).mean()
            axis.plot(means.index, means.to_numpy(), marker="o", markersize=3, label=name)
        if log_scale and (rows.value > 0).any():
            axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.set_title(label, fontsize=9)
        if len(rows):
            axis.legend(fontsize=6)
    figure.suptitle(f"network health - {title}", fontsize=9)
    return plots.save(figure, path)


def listed(rows: pd.DataFrame) -> str:
    """``module (value as a percentage)`` for each row, comma-separated, as HTML."""
    return html.escape(", ".join(f"{module} ({value:.0%})" for module, value in zip(rows.module, rows.value,
                                                                                    strict=True)))


def section(run: Run) -> str:
    table = run.read_table("health.csv", COLUMNS)
    if table is None:
        return page.missing("health table", f"interp health {run.directory}")
    final = table[table.step == table.step.max()]
    units = final[final.metric == "active_units"]
    dead = units[units.value < DEAD_BELOW]
    verdict = (f"<p><b>Mostly dead</b> at the final checkpoint (fewer than {DEAD_BELOW:.0%} of the units positive "
               f"on any frame): {listed(dead)}</p>" if len(dead)
               else "<p>Every layer has units that fire at the final checkpoint.</p>")
    gates = final[final.metric == "gate_saturation"]
    saturated = gates[gates.value > SATURATED_CELL]
    if len(saturated):
        verdict += (f"<p><b>Saturated</b> at the final checkpoint (more than {SATURATED_CELL:.0%} of the sigmoid "
                    f"gates within {SATURATED} of 0 or 1; little gradient passes them to what comes before): "
                    f"{listed(saturated)}</p>")
    return page.image(run.analysis / "health.png", f"{run.name}: network health") + verdict


STAGE = Stage(
    name="health",
    summary="dead units, attention entropy, gradient norms per module and saturated LSTM gates across training",
    description="For every checkpoint of RUN_DIR, on the first --frames frames of the evaluation set: the fraction "
                "of each convolution's and linear layer's units that fire, each attention head's normalised "
                "entropy, the gradient norm per module of the greedy log-probability and of the value, and the "
                "fraction of each LSTM cell's sigmoid gates saturated. Writes "
                "RUN_DIR/analysis/health.csv (step, module, metric, value) and health.png.",
    options=HealthOptions, compute=compute, finish=finish, section=section, heading="Network health",
    tables=("health.csv",), figures=("health.png",), version=2)
