"""Returns of whole episodes: batched play equals playing each game alone, runs are reproducible, and the run's
evaluation table is written once per final checkpoint."""

import numpy as np
import pytest

from analyses.analyse import analyse_run
from analyses.evaluation import POLICIES, EvaluationOptions, play
from cli import main
from interp.agents import make_agent, save_checkpoint
from interp.envs import make_env
from interp.errors import UserError
from interp.rollout import rollout
from interp.runs import Run


def play_alone(agent, seed: int, frame_size: int) -> float:
    env = make_env("MiniPong-v0", seed=seed, frame_size=frame_size)
    return sum(step.reward for step in rollout(env, "greedy", agent=agent, seed=seed, episodes=1))


@pytest.mark.parametrize(("arch", "frame_size", "options"), [
    ("baseline", 84, {}),
    ("timesformer_divided", 42, {"mem_len": 4, "embed_dim": 16}),  # memory of earlier steps
])
def test_batched_greedy_play_equals_each_game_played_alone(arch, frame_size, options):
    agent = make_agent(arch, (4, frame_size, frame_size), 3, **options).eval()
    returns = play(agent, "MiniPong-v0", episodes=3, policy="greedy", seed=7, frame_size=frame_size)
    assert returns.tolist() == [play_alone(agent, 7 + i, frame_size) for i in range(3)]


def test_sampled_and_random_play_are_reproducible_and_differ_with_the_seed():
    agent = make_agent("baseline", (4, 84, 84), 3)
    for policy, player in (("sampled", agent), ("random", None)):
        first = play(player, "MiniPong-v0", episodes=4, policy=policy, seed=1)
        assert np.array_equal(first, play(player, "MiniPong-v0", episodes=4, policy=policy, seed=1))
        assert ((-5 <= first) & (first <= 5)).all()
    seeds = [play(None, "MiniPong-v0", episodes=4, policy="random", seed=s) for s in range(3)]
    assert len({tuple(r) for r in seeds}) > 1
    with pytest.raises(ValueError, match="needs an agent"):
        play(None, "MiniPong-v0", policy="greedy")
    with pytest.raises(UserError, match="at least 1"):
        play(agent, "MiniPong-v0", episodes=0)


def test_a_bad_episode_count_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(UserError, match="at least 1"):
        EvaluationOptions(episodes=0)
    assert main(["analyse", str(tmp_path / "missing"), "--episodes", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_the_evaluation_stage_writes_one_row_per_policy_and_reuses_it(tmp_path):
    agent = make_agent("baseline", (4, 84, 84), 3)
    save_checkpoint(tmp_path / "checkpoints" / "step_000000000010.pt", agent, step=10, env="MiniPong-v0")

    def evaluation(**options):
        analyse_run(tmp_path, stages=("evaluation",), options={"evaluation": EvaluationOptions(**options)},
                    progress=False, log=lambda line: None)
        return Run.open(tmp_path).read_table("evaluation.csv")

    table = evaluation(episodes=3)
    assert table.policy.tolist() == list(POLICIES) and set(table.step) == {10} and set(table.episodes) == {3}
    cached = list((tmp_path / "analysis" / "cache").glob("evaluation-*/step_*.csv"))
    mtime = cached[0].stat().st_mtime_ns
    assert evaluation(episodes=3).equals(table) and cached[0].stat().st_mtime_ns == mtime  # reused
    assert set(evaluation(episodes=3, seed=5).seed) == {5}  # another seed is another result
    save_checkpoint(tmp_path / "checkpoints" / "step_000000000020.pt", agent, step=20, env="MiniPong-v0")
    assert set(evaluation(episodes=3).step) == {20}
