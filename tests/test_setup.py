"""The installed environment: the zennit shim, the packages the toolkit needs, and the command line."""

import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from torch import nn

from interp._compat import import_zennit


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_plain_import_of_every_package_works_in_the_environment():
    # a fresh interpreter, so the .pth written by `make setup` is what makes `import zennit` work
    result = run_python("import interp, trainers, analyses, zennit, captum, ocatari, hackatari, numpy, cv2; "
                        "print(numpy.__version__, cv2.__version__)")
    assert result.returncode == 0, result.stderr
    numpy_version = result.stdout.split()[0]
    assert int(numpy_version.split(".")[0]) >= 2  # OCAtari's numpy<2 pin did not win


def test_zennit_lrp_pass_conserves_relevance():
    zennit = import_zennit()
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.rules import Epsilon

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 40 * 40, 6))
    for module in model.modules():
        if hasattr(module, "bias") and module.bias is not None:
            nn.init.zeros_(module.bias)
    frames = torch.rand(2, 4, 84, 84)
    chosen = torch.eye(6)[[1, 3]]
    composite = zennit.composites.LayerMapComposite([(nn.Conv2d, Epsilon(1e-9)), (nn.Linear, Epsilon(1e-9))])
    with Gradient(model=model, composite=composite) as attributor:
        # the chosen logit itself is the relevance that starts at the output
        output, relevance = attributor(frames, lambda out: out * chosen)
    expected = (output * chosen).sum(1)
    assert expected.abs().min() > 1e-3
    assert torch.allclose(relevance.sum((1, 2, 3)), expected, rtol=1e-3)
    # a named composite from zennit's registry runs as well
    with Gradient(model=model, composite=EpsilonPlusFlat()) as attributor:
        _, relevance = attributor(frames, chosen)
    assert relevance.shape == frames.shape and relevance.abs().sum() > 0


def test_interp_help_lists_commands():
    result = subprocess.run([str(Path(sys.executable).parent / "interp"), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "demo" in result.stdout and "envs" in result.stdout


def test_demo_writes_a_playable_h264_video(tmp_path):
    from cli import main

    assert main(["demo", "--out", str(tmp_path), "--env", "MiniPong-TwoBall-v0", "--steps", "40"]) == 0
    reader = imageio.get_reader(tmp_path / "MiniPong-TwoBall-v0.mp4")
    frames = [frame for frame in reader]
    assert reader.get_meta_data()["codec"] == "h264" and len(frames) == 40
    assert np.asarray(frames[-1]).std() > 0


def test_bad_environment_is_one_line_and_status_2(capsys):
    from cli import main

    assert main(["demo", "--env", "MiniPong-v9", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MiniPong-v0" in err[0]
