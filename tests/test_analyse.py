"""Sanity checks by cascading randomisation, agreement across training, and the one command for a whole run."""

import numpy as np
import pandas as pd
import torch

from analyses.analyse import analyse_run
from analyses.atom import AtomOptions
from analyses.sanity import image_maps
from cli import main
from interp.agents import make_agent, save_checkpoint
from interp.sanity import cascading_randomisation, layers_in_order, randomise_
from interp.steps import Steps

SMALL_TSF = {"patch_embedding": "conv", "mem_len": 3}


def random_steps(agent, count: int = 3) -> Steps:
    generator = torch.Generator().manual_seed(0)
    inputs = {"frame": torch.randint(0, 256, (1, count, 4, 84, 84), dtype=torch.uint8, generator=generator),
              "last_action": torch.zeros(1, count, dtype=torch.long), "reward": torch.zeros(1, count),
              "done": torch.ones(1, count, dtype=torch.bool)}
    return Steps(inputs, agent.initial_state(count))


def test_randomising_every_layer_changes_every_parameter():
    torch.manual_seed(0)
    agent = make_agent("timesformer_divided", num_actions=3, **SMALL_TSF)
    before = {name: p.detach().clone() for name, p in agent.named_parameters()}
    modules = dict(agent.named_modules())
    layers = layers_in_order(agent, random_steps(agent))
    assert layers[0] == "" and layers[-1] == "actor_critic.baseline"  # position embeddings first, the value head last
    generator = torch.Generator().manual_seed(0)
    for name in layers:
        randomise_(modules[name], generator)
    unchanged = [name for name, p in agent.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []  # LayerNorm gains, zero-initialised temporal_fc, distance biases, position: all drawn anew


def test_cascading_randomisation_destroys_gradient_maps():
    torch.manual_seed(0)
    agent = make_agent("timesformer_divided", num_actions=3, **SMALL_TSF).eval()
    steps = random_steps(agent)
    table = cascading_randomisation(agent, steps, lambda a, s: image_maps(a, s, ("gradient",)), points=3)
    spearman = table[table.metric == "spearman"].pivot(index="layers_randomised", columns="map", values="value")
    assert (spearman.loc[0] == 1).all()
    assert spearman.index.max() == len(layers_in_order(agent, steps))
    assert spearman.loc[spearman.index.max(), "gradient/actor"] < 0.5
    assert {"attention/core.layers.0.space_attention.hook_weights/h0", "gradient/critic"} <= set(spearman.columns)
    assert set(table.metric) == {"spearman", "ssim"}


def test_analyse_command_runs_every_stage_in_workers_and_reuses_results(tmp_path, capsys):
    torch.manual_seed(0)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"env": "MiniPong-v0", "env_options": {}}')
    for step in (0, 500):
        save_checkpoint(run / "checkpoints" / f"step_{step:012d}.pt",
                        make_agent("timesformer_divided", num_actions=3, **SMALL_TSF), env="MiniPong-v0", step=step)
    assert main(["analyse", str(run), "--frames", "3", "--workers", "2", "--episodes", "2"]) == 0
    analysis = run / "analysis"
    agreement = pd.read_csv(analysis / "agreement.csv", keep_default_na=False, na_values=[""])
    assert list(agreement.columns) == ["step", "head", "method", "target", "metric", "value", "chance", "better"]
    assert agreement[agreement.metric == "cc"].better.between(0, 1).all()
    assert sorted(agreement.step.unique()) == [0, 500]
    assert set(agreement.method) == {"perturbation", "gradient", "smoothgrad", "lrp", "atom"}
    assert agreement[agreement.metric == "cc"].value.between(-1, 1).all()
    masses = agreement[agreement.metric == "attention_mass/ball"]
    assert len(masses) and (masses.chance > 0).all() and masses.value.between(0, 1).all()
    assert (analysis / "agreement" / "cc.png").exists() and (analysis / "atom.png").exists()
    sanity = pd.read_csv(analysis / "sanity.csv")
    assert set(sanity.step) == {500} and sanity.layers_randomised.max() > 5
    assert (analysis / "sanity_flags.csv").exists() and (analysis / "evalset.npz").exists()
    assert (analysis / "video.mp4").stat().st_size > 1000 and len(list((analysis / "stills").glob("*.png"))) == 6

    assert len(list((analysis / "cache").glob("maps-*"))) == 1  # ATOM and agreement share the maps
    cached = sorted(path for path in (analysis / "cache").glob("*/step_*") if path.suffix != ".sha256")
    # maps, agreement, ATOM, health and the pre-step states for each checkpoint; sanity, evaluation, stills and video
    # for the final one
    assert len(cached) == 14 and len([path for path in cached if path.parent.name.startswith("states-")]) == 2
    assert (analysis / "health.csv").exists() and (analysis / "health.png").exists()
    cached.append(analysis / "evalset.npz")  # without --frames, the run's evaluation set is kept
    stamps = [path.stat().st_mtime_ns for path in cached]
    assert main(["analyse", str(run), "--workers", "2", "--episodes", "2"]) == 0
    assert [path.stat().st_mtime_ns for path in cached] == stamps
    atom = pd.read_csv(analysis / "atom.csv")
    shares = atom[(atom.method == "atom") & (atom.metric == "hierarchical_share")]
    mixed = agreement[agreement.method == "atom"]
    assert sorted(zip(mixed.step, mixed.metric, mixed.value, strict=True)) == sorted(
        zip(shares.step, "atom_share/" + shares.object, shares.value, strict=True))
    # ATOM is a declared input of agreement: other ATOM options, another agreement result
    analyse_run(run, stages=("agreement",), options={"atom": AtomOptions(methods=("gradient",))}, progress=False,
                log=lambda line: None)
    assert len(list((analysis / "cache").glob("agreement-*"))) == 2

    baseline_run = tmp_path / "baseline"
    save_checkpoint(baseline_run / "checkpoints" / "step_000000000000.pt", make_agent("baseline", num_actions=3),
                    env="MiniPong-v0", step=0)
    capsys.readouterr()
    assert main(["overlap", str(baseline_run), "--evalset", str(analysis / "evalset.npz")]) == 2  # the old name
    assert "no attention over the frame" in capsys.readouterr().err
    assert np.isfinite(agreement.value).all()
