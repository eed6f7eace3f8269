"""Training configuration: one frozen dataclass, saved as ``RUN_DIR/config.json``, and the thesis presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from interp.cluster import BACKENDS
from interp.errors import UserError
from trainers.precision import PRECISIONS

OPTIMIZERS = ("rmsprop_tf1", "rmsprop_torch")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (CLI flags map onto these fields)."""

    arch: str = "baseline"
    """architecture name from ``interp.agents.AGENTS``"""
    env: str = "MiniPong-v0"
    """environment id"""
    steps: int = 1_000_000
    """environment steps (agent steps, over all environments) to train for"""
    out: str = "runs/train"
    """run directory"""
    actors: int = 2
    """actor processes; 0 runs one actor in the learner's process, synchronously (fully reproducible)"""
    envs_per_actor: int = 8
    """environments each actor steps as one batch (batched inference)"""
    batch_size: int = 16
    """environments' rollouts per learner update; a multiple of envs_per_actor"""
    unroll: int = 20
    """steps per rollout (T)"""
    learner_threads: int = 0
    """torch threads of the learner (0: torch's default, one per core). On few cores, one learner thread beside one
    actor can be fastest: the actors need cores too (README, "Training on few cores")"""
    num_buffers: int = 0
    """rollout slots in shared memory (0: two per actor, at least enough for two batches)"""
    optimizer: str = "rmsprop_tf1"
    """``rmsprop_tf1``: RMSProp as IMPALA ran it (TensorFlow 1: the mean square starts at one, epsilon under the square
    root; :mod:`trainers.optim`); ``rmsprop_torch``: ``torch.optim.RMSprop`` (MonoBeast's), whose first updates are
    ~10x the learning rate and kill the first convolution on ALE Pong within a few updates"""
    lr: float = 6e-4
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 0.01
    rmsprop_momentum: float = 0.0
    discounting: float = 0.99
    baseline_cost: float = 0.5
    entropy_cost: float = 0.01
    grad_norm_clip: float = 40.0
    reward_clip: float = 1.0
    """rewards are clipped to [-reward_clip, reward_clip] for learning (0: no clipping)"""
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    """``bf16``: the learner's forward and backward passes and the actors' inference under bfloat16 autocast (weights,
    optimizer state, V-trace and losses in float32); ``fp32``; ``auto``: bf16 on a CPU with native bfloat16
    (AVX512-BF16, AMX) or a CUDA device that has it, else fp32 (TF32 products on CUDA)"""
    checkpoint_every: int = 100_000
    """steps between checkpoints after the log-spaced early ones"""
    first_checkpoint: int = 100
    """the first of the log-spaced early checkpoints (1-2-5 steps: 100, 200, 500, 1000, ...) after step 0"""
    frame_size: int = 84
    agent: dict = field(default_factory=dict)
    """architecture options, e.g. ``{"mem_len": 40}``"""
    env_options: dict = field(default_factory=dict)
    """environment options, e.g. ``{"points": 3}`` or ``{"modifications": ["lazy_enemy"]}``"""
    max_actor_restarts: int = 3
    """an actor that dies is restarted this many times in all before the run stops with an error"""
    preset: str = ""
    """the named preset these settings came from, if any"""
    backend: str = "local"
    """``local``: actor processes on this machine sharing memory with the learner; ``ray``: Ray actors"""
    ray_address: str = ""
    """the Ray cluster to use with ``backend="ray"`` (empty: start Ray on this machine)"""

    def __post_init__(self) -> None:
        if self.actors < 0 or self.envs_per_actor < 1 or self.unroll < 1 or self.steps < 0 or self.learner_threads < 0:
            raise UserError("actors, steps and learner threads must be >= 0, envs-per-actor and unroll >= 1")
        if self.first_checkpoint < 1:
            raise UserError(f"first checkpoint must be at least 1 step, not {self.first_checkpoint}")
        if self.batch_size % self.envs_per_actor:
            raise UserError(f"batch size {self.batch_size} must be a multiple of envs-per-actor {self.envs_per_actor}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"device must be cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.backend not in BACKENDS:
            raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")

    @property
    def slots_per_batch(self) -> int:
        return self.batch_size // self.envs_per_actor

    @property
    def buffer_slots(self) -> int:
        """Rollout slots: a whole number per actor, at least two per actor and two batches' worth."""
        actors = max(self.actors, 1)
        wanted = max(self.num_buffers, 2 * actors, 2 * self.slots_per_batch)
        return -(-wanted // actors) * actors

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        data.setdefault("optimizer", "rmsprop_torch")  # runs written before the setting existed used torch's
        return cls(**{k: v for k, v in data.items() if k in known})


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
PRESETS = ("thesis", "monobeast")


def apply_preset(config: TrainConfig, preset: str) -> TrainConfig:
    """``thesis``: Appendix A's unroll, chunk and batch sizes for the architecture (envs per actor adjusted to divide
    the batch); ``monobeast``: TorchBeast MonoBeast's defaults (RMSprop 4.8e-4, entropy 0.0006, batch 8, unroll 80)."""
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
    raise UserError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
