"""Analyses on any device: ``--device {auto,cpu,cuda}``, results equal to the CPU's, one cache whatever the device."""

import numpy as np
import pandas as pd
import pytest
import torch
from test_stages import make_run

from analyses.analyse import analyse_run
from analyses.atom import AtomOptions
from analyses.maps import MapsOptions
from cli import main
from interp.devices import resolve_device
from interp.errors import UserError
from interp.evalset import load_evalset

CUDA = torch.cuda.is_available()


def test_devices_resolve_to_what_torch_sees_and_bad_names_are_one_line_errors():
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"
    for bad in ("tpu", "cuda:x", "", "CPU"):
        with pytest.raises(UserError, match="device must be one of auto, cpu, cuda"):
            resolve_device(bad)
    if not CUDA:
        with pytest.raises(UserError, match="torch sees no CUDA device"):
            resolve_device("cuda")


def test_bad_device_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "run", steps=(0,))
    assert main(["maps", str(run), "--device", "tpu"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "device must be one of" in error


def _analyse(run, device: str, evalset=None) -> dict:
    methods = ("gradient", "smoothgrad")
    analyse_run(run, evalset, stages=("atom",), options={"maps": MapsOptions(methods=methods),
                                                      "atom": AtomOptions(methods=methods)},
                frames=3, device=device, workers=1, progress=False, log=lambda line: None)
    return {path: path.stat().st_mtime_ns for path in (run / "analysis" / "cache").rglob("step_*")
            if path.suffix != ".sha256"}


def test_the_cache_does_not_depend_on_the_device(tmp_path):
    run = make_run(tmp_path / "run", steps=(0, 500))
    first = _analyse(run, "cpu")
    assert len(first) == 4  # maps and atom of two checkpoints
    assert _analyse(run, "auto") == first  # nothing computed again, wherever auto points


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_a_gpu_computes_what_the_cpu_computes(tmp_path):
    run = make_run(tmp_path / "cpu", steps=(0, 500))
    _analyse(run, "cpu")
    gpu = make_run(tmp_path / "gpu", steps=(0, 500))
    _analyse(gpu, "cuda", run / "analysis" / "evalset.npz")
    for name in ("atom.csv",):
        ours, theirs = pd.read_csv(gpu / "analysis" / name), pd.read_csv(run / "analysis" / name)
        np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-4, atol=1e-5)
    maps_cpu = sorted((run / "analysis" / "cache").glob("maps-*/step_*.npz"))
    maps_gpu = sorted((gpu / "analysis" / "cache").glob("maps-*/step_*.npz"))
    assert len(maps_cpu) == len(maps_gpu) == 2
    for ours, theirs in zip(maps_gpu, maps_cpu, strict=True):
        with np.load(ours) as a, np.load(theirs) as b:
            for key in b.files:
                scale = max(float(np.abs(b[key]).max()), 1e-12)
                assert np.abs(a[key] - b[key]).max() <= 1e-3 * scale, key
    assert len(load_evalset(run / "analysis" / "evalset.npz")) == 3
