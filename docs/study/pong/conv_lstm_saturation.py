"""Where the gradient from mott's policy to the frame dies: its ConvLSTM's gates, saturated by the vision features.

    .venv/bin/python docs/study/pong/conv_lstm_saturation.py EVALSET CHECKPOINT [CHECKPOINT ...] [--frames 50]
    .venv/bin/python docs/study/pong/conv_lstm_saturation.py EVALSET --untrained        # fresh agents, seeds 0-2

For each checkpoint, on the evaluation set's first frames with their pre-step state replayed (as the analyses
build it): the mean magnitude of the vision features and of the ConvLSTM's and the LSTM core's gate
pre-activations, the fraction of their sigmoid gates saturated (below 0.02 or above 0.98) and of their tanh
inputs beyond 0.98, and the norm of the gradient of the mean greedy log-probability with respect to the answers
the attention reads and to the ConvLSTM's gate pre-activations. ``--untrained``: the fraction of the ConvLSTM's gates
saturated at initialisation, without the state replay (8 context steps from a zero state), for the thesis's
settings (PyTorch's initialisation, frames not scaled) and the Pong preset's (orthogonal, scaled), without and with
``vision_norm``.
"""

from __future__ import annotations

import argparse

import torch

from analyses.health import saturated_gates
from interp.agents import load_checkpoint, make_agent
from interp.evalset import EvalSet, load_evalset, pre_step_state


def saturated(pre: torch.Tensor) -> tuple[float, float]:
    """Gate pre-activations ``[N, 4 * H, ...]`` (input, forget, cell, output) -> the fraction of the three sigmoid
    gates saturated and of the cell input's tanh beyond 0.98."""
    tanh = torch.tanh(pre.float().chunk(4, dim=1)[2]).abs()
    return float(saturated_gates(pre).float().mean()), float((tanh > 0.98).float().mean())


def probe(agent, evalset: EvalSet) -> dict[str, float]:
    """One checkpoint's row (see the module docstring)."""
    state = pre_step_state(agent, evalset)
    kept = {}
    modules = {"vision": agent.vision, "conv_gates": agent.conv_lstm.gates, "core_gates": agent.core.gates,
               "attention": agent.answerer.attention}
    handles = [module.register_forward_hook(lambda m, args, output, name=name: kept.__setitem__(name, output))
               for name, module in modules.items()]
    try:
        with torch.enable_grad():
            outputs, _ = agent(evalset.step_inputs(), state)
            objective = outputs["policy_logits"][0].float().log_softmax(-1).max(-1).values.mean()
            answers, conv_gates = kept["attention"][0], kept["conv_gates"]
            to_answers, to_conv_gates = torch.autograd.grad(objective, [answers, conv_gates])
    finally:
        for handle in handles:
            handle.remove()
    row = {"vision |x|": float(kept["vision"].detach().abs().mean())}
    for name in ("conv_gates", "core_gates"):
        row[f"{name} |pre|"] = float(kept[name].detach().abs().mean())
        row[f"{name} sigmoid saturated"], row[f"{name} tanh saturated"] = saturated(kept[name].detach())
    row["grad answers"], row["grad conv_gates"] = float(to_answers.norm()), float(to_conv_gates.norm())
    return row


def untrained(evalset: EvalSet) -> None:
    inputs = {key: value[-8:] for key, value in evalset.context_inputs().items()}
    for init, scale in (("torch", False), ("orthogonal", True)):
        for norm in (False, True):
            fractions = []
            for seed in range(3):
                agent = make_agent("mott", tuple(inputs["frame"].shape[2:]), 6, seed=seed, init=init,
                                   scale_frames=scale, vision_norm=norm).eval()
                pre = []
                agent.conv_lstm.gates.register_forward_hook(lambda m, args, output, kept=pre: kept.append(output))
                with torch.no_grad():
                    agent(inputs, agent.initial_state(inputs["frame"].shape[1]))
                fractions.append(saturated(torch.cat(pre))[0])
            print(f"init {init:10s} frames {'scaled' if scale else 'not scaled':10s} vision_norm {norm!s:5s}: "
                  f"ConvLSTM sigmoid gates saturated {', '.join(f'{f:.3f}' for f in fractions)} (seeds 0-2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evalset")
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--untrained", action="store_true")
    args = parser.parse_intermixed_args()
    evalset = load_evalset(args.evalset).subset(slice(0, args.frames))
    if args.untrained:
        untrained(evalset)
    for path in args.checkpoints:
        row = probe(load_checkpoint(path).agent.float(), evalset)
        print(path, "  ".join(f"{key} {value:.3g}" for key, value in row.items()))


if __name__ == "__main__":
    main()
