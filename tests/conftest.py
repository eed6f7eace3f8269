import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def analysed_run(tmp_path_factory):
    """A short real training run of a small attention agent, analysed by `interp analyse` on 4 frames."""
    from cli import main

    run = tmp_path_factory.mktemp("analysed") / "tsf"
    assert main(["train", "--arch", "timesformer_divided", "--agent-option", "patch_embedding=conv",
                 "--agent-option", "mem_len=3", "--env", "MiniPong-v0", "--steps", "640", "--actors", "0",
                 "--envs-per-actor", "4", "--batch-size", "4", "--unroll", "8", "--checkpoint-every", "320",
                 "--out", str(run)]) == 0
    assert main(["analyse", str(run), "--frames", "4", "--workers", "1"]) == 0
    return run
