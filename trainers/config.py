"""Training configuration: one frozen dataclass, saved as ``RUN_DIR/config.json``, and the named presets.

``interp train``'s flags are generated from the fields (:mod:`interp.options`): each field's docstring is its help,
and ``metadata={"resume": True}`` marks the settings of the machine, which ``--resume`` may change.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from interp.agents import AGENTS
from interp.cluster import BACKENDS
from interp.envs import check_user_options
from interp.errors import UserError
from interp.precision import PRECISIONS

OPTIMIZERS = ("rmsprop_tf1", "rmsprop_torch")
LR_SCHEDULES = ("constant", "linear")
PRESETS = ("thesis", "monobeast", "pong")


def _machine(**metadata) -> dict:
    """Metadata of a setting of the machine rather than of the run (``--resume`` may change it)."""
    return {"resume": True, **metadata}


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_learner_threads() -> int:
    """Half the cores: the learner's forward and backward passes are about half of a step's work in bf16
    (benchmarks/train_bound.py), the environments and the actors' inference the other half."""
    return max(1, cores() // 2)


LIGHT_INFERENCE = ("baseline",)
"""architectures whose actors' forward pass costs less than their games' steps, so that an actor's thread mostly
waits for its games (``benchmarks/train_bound.py``, bf16 on ALE Pong: the baseline's 0.18 ms against the games'
0.42 ms per step; the thesis agents' 1.2-2.2 ms)"""


def spare_cores(config: TrainConfig) -> int:
    """The cores the learner's threads leave to the actors (at least one)."""
    return max(1, cores() - (config.learner_threads or cores()))


def default_actors(config: TrainConfig) -> int:
    """An actor process per core the learner leaves, each stepping its games in two groups (one group's games step
    while the other's forward pass runs); for an architecture in :data:`LIGHT_INFERENCE`, one actor more than there
    are cores, each with one group: while one actor waits for its games, another's forward pass has the core.
    Alternating 30-40 s runs on ALE Pong in bf16 on the 2-core machine (README, the compute bound): the baseline with
    3 actors 1766-2033 steps/s against 1205-1528 with 1; the TimeSformer with 3 actors 217-281 against 248-363."""
    return cores() + 1 if config.arch in LIGHT_INFERENCE else spare_cores(config)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run."""

    arch: str = field(default="baseline", metadata={"cli": False})
    """architecture name from ``interp.agents.AGENTS``"""
    env: str = "MiniPong-v0"
    """environment id (``interp envs`` lists them)"""
    steps: int = field(default=1_000_000, metadata=_machine())
    """environment steps (agent steps, over all environments) to train for"""
    until_return: float | None = field(default=None, metadata=_machine())
    """stop early once the mean return of the last 100 training episodes reaches this (none: train for --steps)"""
    out: str = field(default="runs/train", metadata={"cli": False})
    """run directory"""
    actors: int | None = field(default=None, metadata=_machine())
    """actor processes; none picks them by architecture: one more than the cores for the baseline, one per core the
    learner leaves for the others (``default_actors``); 0 runs one actor in the learner's process, synchronously
    (exactly reproducible)"""
    envs_per_actor: int = field(default=16, metadata=_machine())
    """environments each actor steps (ALE games in two groups where the actor has a core of its own: one steps while
    the other's forward pass runs)"""
    batch_size: int = 16
    """rollouts per learner update, in environments; a multiple of envs-per-actor"""
    unroll: int = 20
    """rollout length T"""
    env_threads: int = field(default=1, metadata=_machine())
    """threads stepping each actor's ALE games (ale-py's vector environment; 0: one per core)"""
    learner_threads: int = field(default_factory=default_learner_threads, metadata=_machine())
    """torch threads of the learner, by default half the cores (0: torch's default, one per core)"""
    num_buffers: int = 0
    """rollout slots in shared memory (0: two per actor, at least enough for two batches)"""
    optimizer: str = field(default="rmsprop_tf1", metadata={"choices": OPTIMIZERS})
    """rmsprop_tf1: RMSProp as IMPALA ran it (TensorFlow 1: the mean square starts at one, epsilon under the square
    root; trainers.optim); rmsprop_torch: torch.optim.RMSprop (MonoBeast's), whose first updates are ~10x the
    learning rate and kill the first convolution on ALE Pong within a few updates. By environment unless given:
    rmsprop_tf1 on ALE games, rmsprop_torch on MiniPong"""
    lr: float = 6e-4
    """learning rate"""
    lr_schedule: str = field(default="constant", metadata={"choices": LR_SCHEDULES})
    """constant; or linear: the learning rate falls linearly to 0 at --steps, as IMPALA and MonoBeast anneal it"""
    lr_warmup: int = 0
    """environment steps over which the learning rate first rises linearly to its schedule's (0: none). torch's
    RMSprop starts its mean square at 0, so its first steps are ~10x the learning rate per weight: on MiniPong the
    first update left the quick start's TimeSformer's policy entropy at 0.006-0.71 of 1.10 (under 0.3 in 6 of 10
    seeds)"""
    rmsprop_alpha: float = 0.99
    """RMSProp's decay of the mean square"""
    rmsprop_eps: float = 0.01
    """RMSProp's epsilon (1e-5 on ALE games unless given)"""
    rmsprop_momentum: float = 0.0
    """RMSProp's momentum"""
    discounting: float = 0.99
    """discount factor gamma"""
    baseline_cost: float = 0.5
    """weight of the value loss"""
    entropy_cost: float = 0.01
    """entropy bonus weight"""
    grad_norm_clip: float = 40.0
    """gradients are clipped to this norm"""
    reward_clip: float = 1.0
    """rewards are clipped to [-reward-clip, reward-clip] for learning (0: no clipping)"""
    seed: int = 0
    """random seed"""
    device: str = field(default="cpu", metadata=_machine())
    """cpu or cuda (cuda:N), for the learner"""
    precision: str = field(default="auto", metadata=_machine(choices=PRECISIONS))
    """bf16: the learner's forward and backward passes and the actors' inference under bfloat16 autocast (weights,
    optimizer state, V-trace and losses in float32); fp32; auto: bf16 on a CPU with native bfloat16 (AVX512-BF16,
    AMX) or a CUDA device that has it, else fp32 (TF32 products on CUDA)"""
    checkpoint_every: int = 100_000
    """steps between the regular checkpoints after the log-spaced early ones"""
    first_checkpoint: int = 100
    """the first of the log-spaced early checkpoints (1-2-5 steps: 100, 200, 500, 1000, ...) after step 0"""
    state_every_seconds: float = field(default=600.0, metadata=_machine())
    """seconds of training between saves of the trainer state (what --resume continues from) besides those at the
    checkpoints, so that a run killed without warning (SIGKILL, a machine lost) loses at most this much; 0: at the
    checkpoints only"""
    frame_size: int = 84
    """observation side: 84, or 42 (the thesis' small setting)"""
    agent: dict = field(default_factory=dict, metadata={"key_values": True, "flags": ("--agent-option",)})
    """architecture option, e.g. mem_len=40 (unless given: on ALE games scale_frames=true and init=orthogonal, on
    MiniPong scale_frames=false)"""
    env_options: dict = field(default_factory=dict, metadata={"key_values": True, "flags": ("--env-option",)})
    """environment option, e.g. points=3 or modifications=["lazy_enemy"]"""
    max_actor_restarts: int = 3
    """an actor that dies is restarted this many times in all before the run stops with an error"""
    preset: str = field(default="", metadata={"choices": PRESETS})
    """named settings: thesis (Appendix A's sequence and batch sizes), monobeast (TorchBeast's defaults) or pong
    (what learns ALE Pong on a few cores; README, "Training on ALE games"); flags given explicitly still win"""
    backend: str = field(default="local", metadata=_machine(choices=BACKENDS))
    """local: actor processes on this machine sharing memory with the learner; ray: Ray actors (pip install
    '.[ray]')"""
    ray_address: str = field(default="", metadata=_machine())
    """with --backend ray: a running Ray cluster (default: start Ray on this machine)"""

    def __post_init__(self) -> None:
        if self.actors is None:  # the documented way to set a field of a frozen dataclass while it is made
            object.__setattr__(self, "actors", default_actors(self))
        problems = [problem for problem in (self._count_problems(), self._value_problems()) if problem]
        if problems:
            raise UserError("; ".join(problems))

    def _count_problems(self) -> str:
        wrong = [f"{name.replace('_', '-')} {getattr(self, name)}" for name, low in (
            ("actors", 0), ("envs_per_actor", 1), ("batch_size", 1), ("unroll", 1), ("steps", 0), ("env_threads", 0),
            ("learner_threads", 0), ("num_buffers", 0), ("checkpoint_every", 1), ("first_checkpoint", 1),
            ("max_actor_restarts", 0), ("seed", 0), ("lr_warmup", 0)) if not isinstance(getattr(self, name), int)
            or getattr(self, name) < low]
        if wrong:
            return f"out of range: {', '.join(wrong)} (counts are whole numbers >= 0; envs-per-actor, batch size, " \
                   "unroll and the checkpoint steps >= 1)"
        if self.batch_size % self.envs_per_actor:
            return f"batch size {self.batch_size} must be a multiple of envs-per-actor {self.envs_per_actor}"
        if self.frame_size not in (42, 84):
            return f"frame size must be 84 or 42, not {self.frame_size}"
        return ""

    def _value_problems(self) -> str:
        positive, fraction, non_negative = (lambda v: v > 0), (lambda v: 0 <= v < 1), (lambda v: v >= 0)
        checks = {"lr": positive, "rmsprop_eps": positive, "grad_norm_clip": positive, "rmsprop_alpha": fraction,
                  "rmsprop_momentum": fraction, "discounting": lambda v: 0 <= v <= 1, "baseline_cost": non_negative,
                  "entropy_cost": non_negative, "reward_clip": non_negative,
                  "state_every_seconds": non_negative}
        wrong = [name.replace("_", "-") for name, ok in checks.items()
                 if not (_finite(getattr(self, name)) and ok(getattr(self, name)))]
        if wrong:
            return (f"out of range: {', '.join(wrong)} (learning rate, epsilon and clip > 0; alpha and momentum in "
                    "[0, 1); discounting in [0, 1]; costs, reward clip and state interval >= 0; all finite)")
        for name, allowed in (("device", None), ("precision", PRECISIONS), ("optimizer", OPTIMIZERS),
                              ("lr_schedule", LR_SCHEDULES),
                              ("backend", BACKENDS), ("preset", ("", *PRESETS))):
            value = getattr(self, name)
            if allowed is None and value not in ("cpu", "cuda") and not str(value).startswith("cuda:"):
                return f"device must be cpu or cuda, got {value!r}"
            if allowed is not None and value not in allowed:
                return f"{name} must be one of {', '.join(a for a in allowed if a)}, got {value!r}"
        if self.until_return is not None and not _finite(self.until_return):
            return f"until-return must be a finite number, got {self.until_return!r}"
        if not isinstance(self.agent, dict) or not isinstance(self.env_options, dict):
            return "agent and env options must be mappings of names to values"
        check_user_options(self.env_options)
        return ""

    @property
    def slots_per_batch(self) -> int:
        return self.batch_size // self.envs_per_actor

    @property
    def buffer_slots(self) -> int:
        """Rollout slots: a whole number per actor, at least two per actor and two batches' worth."""
        actors = max(self.actors, 1)
        wanted = max(self.num_buffers, 2 * actors, 2 * self.slots_per_batch)
        return -(-wanted // actors) * actors

    @classmethod
    def resumable(cls) -> tuple[str, ...]:
        """The settings ``--resume`` may change: those of the machine, not of the run."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("resume"))

    def changed_from(self, saved: TrainConfig) -> dict[str, tuple]:
        """The settings of the run (not those of the machine, nor ``out``: a run may move) in which this config
        differs from ``saved``, the run's own: ``{name: (this value, the run's value)}``."""
        def value(config: TrainConfig, name: str):  # an agent option given at its default changes nothing
            return agent_options(config) if name == "agent" else getattr(config, name)

        return {f.name: (getattr(self, f.name), getattr(saved, f.name)) for f in fields(self)
                if f.name != "out" and not f.metadata.get("resume") and value(self, f.name) != value(saved, f.name)}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """The configuration saved at ``path``; a file that is not one is a :class:`UserError`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UserError(f"{path}: not a readable run configuration ({error})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a run configuration (a JSON object is expected)")
        known = {f.name for f in fields(cls)}
        data.setdefault("optimizer", "rmsprop_torch")  # runs written before the setting existed used torch's
        data.setdefault("precision", "fp32")  # and float32
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError, UserError) as error:
            raise UserError(f"{path}: not a valid run configuration ({error})") from None


def agent_options(config: TrainConfig) -> dict:
    """``config.agent`` with its architecture's defaults filled in (``{}`` and ``{"scale_frames": False}`` are the
    same baseline); as given where the architecture or an option is unknown."""
    agent = AGENTS.get(config.arch)
    try:
        return asdict(agent.Config(**config.agent)) if agent else config.agent
    except (TypeError, ValueError):
        return config.agent


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Thesis Appendix A (tables A.1, A.2). Actors and buffers there are for a GPU cluster; the presets keep this
# machine's actor count and set the sequence and batch settings.
THESIS = {
    "mott": {"unroll": 160, "batch_size": 12},
    "adaptive": {"unroll": 239, "batch_size": 16, "agent": {"chunk_size": 80}},
    "spatiotemporal": {"unroll": 239, "batch_size": 12, "agent": {"chunk_size": 80}},
    "spatiotemporal_oneshot": {"unroll": 239, "batch_size": 12, "agent": {"chunk_size": 80}},
    "timesformer_divided": {"unroll": 239, "batch_size": 24,
                            "agent": {"chunk_size": 80, "embed_dim": 16, "patch_size": 7, "layers": 1}},
    "timesformer_joint": {"unroll": 239, "batch_size": 4, "frame_size": 42,
                          "agent": {"chunk_size": 10, "embed_dim": 16, "patch_size": 7, "layers": 1}},
    "baseline": {"unroll": 80, "batch_size": 8},
}
# What learned ALE Pong on this project's 2-core machine (README, "Training on ALE games"; docs/pong/).
PONG = {"env": "ALE/Pong-v5", "rmsprop_eps": 1e-5, "agent": {"scale_frames": True, "init": "orthogonal"}}
# What learns MiniPong here (README, "Training"): torch's RMSprop, whose larger first steps MiniPong's black frames
# bear (with IMPALA's the baseline had not learned by 200k steps, Mott not by 345k), and frames as they are: divided
# by 255, the few bright pixels of a black frame hardly move the policy at the start (atarinet's policy gradient
# through its vision 17x smaller at step 0) and TorchBeast's network learned in 1 of 3 seeds, unscaled in 3 of 3.
MINIPONG = {"optimizer": "rmsprop_torch", "agent": {"scale_frames": False}}
ENVIRONMENT_DEFAULTS = {"ALE/": {k: v for k, v in PONG.items() if k != "env"}, "MiniPong": MINIPONG}
"""environment id prefix -> the settings a run on it gets where its command line does not give them"""


def environment_defaults(env: str) -> dict:
    """The settings that learn on ``env``'s family here (:data:`ENVIRONMENT_DEFAULTS`; none for others)."""
    return next((dict(settings) for prefix, settings in ENVIRONMENT_DEFAULTS.items() if env.startswith(prefix)), {})


def configure(arch: str, out: str, given: dict) -> TrainConfig:
    """A run's configuration from the settings ``given`` (``interp train``'s flags): the dataclass's defaults, under
    the environment's (:func:`environment_defaults`), under the preset's (``given["preset"]``), under ``given``
    (flags given explicitly win; agent options merge key by key)."""
    preset = given.get("preset", "")
    env = given.get("env") or (PONG["env"] if preset == "pong" else TrainConfig.env)
    layers = [environment_defaults(env), {k: v for k, v in given.items() if k != "preset"}]
    agent = {k: v for layer in layers for k, v in layer.get("agent", {}).items()}
    settings = {k: v for layer in layers for k, v in layer.items() if k != "agent"}
    config = TrainConfig(arch=arch, out=out, **settings, agent=agent)
    if preset:
        config = replace(apply_preset(config, preset), **{k: v for k, v in given.items() if k != "agent"})
    return config


def apply_preset(config: TrainConfig, preset: str) -> TrainConfig:
    """``thesis``: Appendix A's unroll, chunk and batch sizes for the architecture (envs per actor adjusted to divide
    the batch); ``monobeast``: TorchBeast MonoBeast's defaults (torch's RMSprop at 4.8e-4, entropy 0.0006, batch
    8, unroll 80); ``pong``: :data:`PONG`. Agent options given in ``config`` win over the preset's."""
    if preset == "thesis":
        settings = dict(THESIS[config.arch])
        agent = {**settings.pop("agent", {}), **config.agent}
        envs = next(e for e in range(min(config.envs_per_actor, settings["batch_size"]), 0, -1)
                    if settings["batch_size"] % e == 0)
        return replace(config, **settings, agent=agent, envs_per_actor=envs, preset=preset)
    if preset == "monobeast":
        envs = next(e for e in range(min(config.envs_per_actor, 8), 0, -1) if 8 % e == 0)
        return replace(config, optimizer="rmsprop_torch", lr=4.8e-4, entropy_cost=0.0006, batch_size=8, unroll=80,
                       envs_per_actor=envs, preset=preset)
    if preset == "pong":
        settings = dict(PONG)
        agent = {**settings.pop("agent", {}), **config.agent}
        return replace(config, **settings, agent=agent, preset=preset)
    raise UserError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
