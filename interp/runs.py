"""A run: checkpoints by training step, the environment the agent played, and where the run's analyses live.

Every analysis relies on this contract alone: an ordered set of ``(step, checkpoint file)`` and the environment
(id and options, the frame size among them). ``interp train`` writes a run in this layout, through :class:`Run`:

    RUN_DIR/config.json                       the TrainConfig, as JSON (read here as a mapping: the run model
                                              sits below the trainer and does not import it)
    RUN_DIR/checkpoints/step_<12 digits>.pt   checkpoints (interp.agents.save_checkpoint)
    RUN_DIR/metrics.csv, tensorboard/         one row per update
    RUN_DIR/trainer_state.pt                  optimizer, step and RNG state for --resume
    RUN_DIR/analysis/                         tables, plots, stills, video; cache/ holds one result per stage and
                                              checkpoint
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from interp.agents import Checkpoint, load_checkpoint
from interp.agents.checkpoint import safe_load
from interp.errors import UserError
from interp.files import atomic_path
from interp.importers import load_any

CHECKPOINT_NAME = re.compile(r"step_(\d{12})\.pt")
LEFTOVER = re.compile(r"\..+\.[0-9a-f]{8}\.(tmp|csv|json)")
"""a temporary file of :func:`interp.files.atomic_path` (``.<name>.<8 hex>.<suffix>``)"""


RUN_FILES = {"config.json": "its configuration", "metrics.csv": "its training metrics",
             "trainer_state.pt": "its trainer state"}
"""the files of a run directory that its commands write, each with what it holds"""


CONFIG_FIELDS = {"arch": str, "env": str, "frame_size": int, "env_options": dict, "seed": int}
"""the fields of ``config.json`` the run model and the analyses read, with their types"""


def read_config(path: Path) -> dict:
    """A run's ``config.json`` as a mapping, the types of what the analyses read checked (:data:`CONFIG_FIELDS`; a
    field left out has the trainer's default); the trainer validates every field when it resumes
    (``trainers.config.TrainConfig.from_json``)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable run configuration ({error})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a run configuration (a JSON object is expected)")
    wrong = [name for name, kind in CONFIG_FIELDS.items() if name in config
             and (not isinstance(config[name], kind) or isinstance(config[name], bool))]
    if wrong:
        raise UserError(f"{path}: not a valid run configuration ({', '.join(wrong)} of the wrong type)")
    return config


def owner_of(path: str | os.PathLike) -> str:
    """What a file belongs to when it is part of a run a command wrote (``""`` when it is not): the run directory's
    own files, its checkpoints and TensorBoard events, and the tables and figures its analysis stages wrote. Another
    command's output must not be written over them."""
    path = Path(path).absolute()
    for run in (path.parent, path.parent.parent):
        if (run / "config.json").is_file() and (run / "checkpoints").is_dir():
            break
    else:
        return ""
    inside = path.relative_to(run).parts
    if len(inside) == 1 and inside[0] in RUN_FILES:
        return f"the run {run}: {RUN_FILES[inside[0]]}"
    if inside[0] in ("checkpoints", "tensorboard"):
        return f"the run {run}: its {inside[0]}"
    if inside[0] == "analysis" and len(inside) == 2 and path.suffix in (".csv", ".png", ".json", ".mp4"):
        return f"the analysis of the run {run}"
    return ""


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint at ``step``: ``step_<12 digits>.pt``."""
    if step < 0:
        raise ValueError(f"a checkpoint's step is >= 0, not {step}")
    return f"step_{step:012d}.pt"


@dataclass(frozen=True)
class Environment:
    """What the agent played: the environment id and its options, the frame size among them."""

    id: str
    options: dict = field(default_factory=dict)

    @property
    def frame_size(self) -> int:
        return int(self.options.get("frame_size", 84))


class Run:
    """A run's checkpoints by step (sorted), its environment, its configuration (None for a run written elsewhere)
    and its analysis folder.

    >>> run = Run.open("runs/mott")
    >>> run.steps[-1], run.final, run.environment.id
    >>> run.read_table("atom.csv")
    """

    def __init__(self, directory: str | Path, checkpoints: dict[int, Path], environment: Environment, *,
                 config=None, analysis: str | Path | None = None):
        self.directory = Path(directory)
        self.checkpoints = dict(sorted(checkpoints.items()))
        self.environment = environment
        self.config: dict | None = config
        """the run's ``config.json`` (``trainers.config.TrainConfig``'s fields) when ``interp train`` wrote it"""
        self.analysis = Path(analysis) if analysis is not None else self.directory / "analysis"
        self.notes: list[str] = []
        """what was left out of a folder of another library's checkpoints, and why (one line each)"""

    @classmethod
    def open(cls, directory: str | Path, *, analysis: str | Path | None = None, env: str | None = None,
             steps_from: str | None = None) -> Run:
        """The run in ``directory``: one ``interp train`` wrote (``checkpoints/step_*.pt``), or a folder of another
        library's checkpoints (:mod:`interp.importers`), whose steps come from the file names (``steps_from``: a
        regular expression with one group, instead of the library's naming) and whose environment, unless the files
        name it, is ``env``."""
        directory = Path(directory)
        if directory.is_file():
            raise UserError(f"{directory} is a file; a run directory (from `interp train`) was expected")
        if not directory.is_dir():
            raise UserError(f"{directory}: no such run directory")
        checkpoints = {int(match.group(1)): path for path in (directory / "checkpoints").glob("step_*.pt")
                       if (match := CHECKPOINT_NAME.fullmatch(path.name))}
        if not checkpoints:
            return cls._from_folder(directory, analysis, env, steps_from)
        config_path = cls.config_file(directory)
        config = read_config(config_path) if config_path.exists() else None
        if config is not None and "env" in config:
            environment = Environment(config["env"], {"frame_size": config.get("frame_size", 84),
                                                      **config.get("env_options", {})})
        else:  # the final checkpoint names its environment, or --env does
            environment = _environment_of(load_checkpoint(checkpoints[max(checkpoints)]), directory, env)
        return cls(directory, checkpoints, environment, config=config, analysis=analysis)

    @classmethod
    def _from_folder(cls, directory: Path, analysis, env: str | None, steps_from: str | None) -> Run:
        from interp.importers import IMPORTERS, source_of

        sources = {}
        for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
            with contextlib.suppress(UserError):  # logs, configurations, videos: not checkpoints
                sources[path] = source_of(path)
        if not sources:
            raise UserError(f"{directory}: no checkpoints (neither {directory / 'checkpoints'}/step_*.pt nor "
                            "checkpoints of Stable-Baselines3, CleanRL or TorchBeast)")
        if len(set(sources.values())) > 1:
            found = ", ".join(f"{path.name} ({source})" for path, source in list(sources.items())[:4])
            raise UserError(f"{directory} mixes checkpoints of several sources ({found}); one run is one source")
        source = next(iter(sources.values()))
        pattern = _step_pattern(steps_from) if steps_from else (IMPORTERS[source].step if source != "interp"
                                                                else re.compile(r"(\d+)(?!.*\d)"))
        checkpoints, notes = _steps_of(list(sources), pattern, steps_from)
        final = load_any(checkpoints[max(checkpoints)])
        run = cls(directory, checkpoints, _environment_of(final, directory, env), analysis=analysis)
        run.notes = notes
        return run
    # ---- checkpoints ----

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def steps(self) -> list[int]:
        return list(self.checkpoints)

    @property
    def final(self) -> int:
        """The step of the newest checkpoint."""
        return self.steps[-1]

    def checkpoint(self, step: int) -> Path:
        if step not in self.checkpoints:
            raise UserError(f"{self.directory}: no checkpoint at step {step} (steps: {_some(self.steps)})")
        return self.checkpoints[step]

    def step_of(self, path: str | Path) -> int:
        """The step of one of the run's checkpoint files."""
        for step, known in self.checkpoints.items():
            if Path(path) == known:
                return step
        raise UserError(f"{path} is not a checkpoint of {self.directory}")

    def load(self, step: int) -> Checkpoint:
        return load_any(self.checkpoint(step))

    @functools.cached_property
    def agent(self):
        """The final checkpoint's agent (eval mode)."""
        return self.load(self.final).agent.eval()

    @property
    def architecture(self) -> str:
        """The architecture of the final checkpoint, which every checkpoint of the run must share."""
        return self.agent.name

    def check_architecture(self) -> None:
        """Every checkpoint holds an agent of the run's architecture, trained on the run's environment where it
        says (a foreign one would mix two agents into one table); reading only each file's description, before any
        analysis starts."""
        for path in self.checkpoints.values():
            payload = safe_load(path, mmap=True) if path.suffix == ".pt" else None  # the weights are not read
            own = isinstance(payload, dict) and "agent" in payload
            name = payload.get("agent", {}).get("name") if own else load_any(path).agent.name
            if name != self.architecture:
                raise UserError(f"{path} holds a {name!r} agent, not the run's {self.architecture!r} (its final "
                                f"checkpoint's); move it out of {self.directory / 'checkpoints'}")
            trained_on = payload.get("meta", {}).get("env") if own and isinstance(payload.get("meta"), dict) else None
            if trained_on and trained_on != self.environment.id:
                raise UserError(f"{path} was trained on {trained_on}, not on the run's {self.environment.id}; move "
                                f"it out of {self.directory / 'checkpoints'}")

    # ---- the files interp train writes ----

    def checkpoint_path(self, step: int) -> Path:
        """Where the trainer writes the checkpoint of ``step``."""
        return self.checkpoints_folder / checkpoint_name(step)

    @property
    def checkpoints_folder(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def tensorboard_folder(self) -> Path:
        return self.directory / "tensorboard"

    def holds_training(self) -> bool:
        """Whether ``interp train`` has written here: a checkpoint or a trainer state."""
        return any(self.checkpoints_folder.glob("step_*.pt")) or self.state_path.exists()

    @staticmethod
    def config_file(directory: str | Path) -> Path:
        """Where the run in ``directory`` keeps its configuration."""
        return Path(directory) / "config.json"

    @staticmethod
    def started(directory: str | Path) -> bool:
        """Whether ``directory`` holds the configuration of a run (``interp train`` has begun it there)."""
        return Run.config_file(directory).is_file()

    @classmethod
    def new(cls, config) -> Run:
        """The run ``interp train`` writes (or continues) in ``config.out``, as configured."""
        environment = Environment(config.env, {"frame_size": config.frame_size, **config.env_options})
        return cls(config.out, {}, environment, config=dataclasses.asdict(config))

    @property
    def config_path(self) -> Path:
        return self.config_file(self.directory)

    def write_config(self) -> None:
        """Write :attr:`config` as ``config.json`` (atomically), creating the run directory and its checkpoints
        folder where they are missing."""
        self.checkpoints_folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.config_path) as tmp:
            tmp.write_text(json.dumps(self.config, indent=2, sort_keys=True))

    @property
    def metrics_path(self) -> Path:
        return self.directory / "metrics.csv"

    @property
    def state_path(self) -> Path:
        return self.directory / "trainer_state.pt"

    def remove_leftovers(self) -> list[Path]:
        """Remove what an interrupted writer left in the run directory and its checkpoints: the temporary files of
        :func:`interp.files.atomic_path` (``.<name>.<8 hex>.<suffix>``), which a SIGKILL leaves behind. Call it
        holding the run's lock, when no writer can be at work."""
        leftovers = [path for folder in (self.directory, self.checkpoints_folder) if folder.is_dir()
                     for path in folder.iterdir() if LEFTOVER.fullmatch(path.name)]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    # ---- exclusive use ----

    @contextlib.contextmanager
    def lock(self, what: str, folder: Path | None = None) -> Iterator[None]:
        """Hold ``folder/.lock`` (default: the run directory's) while ``what`` (e.g. ``"interp train"``) runs; a
        second holder is refused with the first's name and pid. The operating system releases the lock when its
        process ends, however it ends."""
        folder = Path(folder or self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ".lock"
        handle = open(path, "a+")  # noqa: SIM115 (held until the block ends)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise UserError(f"{folder} is in use by {holder}; wait for it to finish (or stop it)") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{what} (pid {os.getpid()})")
            handle.flush()
            yield
        finally:
            handle.close()

    # ---- analyses ----

    @property
    def evalset_path(self) -> Path:
        """The run's own evaluation set, which ``interp analyse`` builds from the final checkpoint."""
        return self.analysis / "evalset.npz"

    @property
    def findings_path(self) -> Path:
        return self.analysis / "findings.json"

    @property
    def cache(self) -> Path:
        """One folder per stage and options, one result file per checkpoint (:mod:`analyses.stages`)."""
        return self.analysis / "cache"

    def read_table(self, name: str, columns: tuple[str, ...] = ()) -> pd.DataFrame | None:
        """A tidy CSV of the run (``metrics.csv`` in the run directory, any other in the analysis folder), or None
        when it has not been written yet; one that cannot be read, or lacks any of ``columns``, is a
        :class:`UserError`."""
        path = self.metrics_path if name == "metrics.csv" else self.analysis / name
        if not path.exists():
            return None
        try:
            table = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: not a readable table ({str(error).splitlines()[0]})") from None
        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise UserError(f"{path}: not the table expected there (no column {', '.join(missing)})")
        return table


def _environment_of(checkpoint: Checkpoint, directory: Path, env: str | None = None) -> Environment:
    config = checkpoint.meta.get("config") or {}
    named = config.get("env") or checkpoint.meta.get("env")
    if env and named and env != named:
        raise UserError(f"{directory}: its checkpoints were trained on {named}, not on {env}")
    if not (env or named):
        raise UserError(f"{directory}: neither config.json nor the checkpoints name the environment; give --env")
    options = dict(config.get("env_options", {}))
    if checkpoint.meta.get("preprocessing"):  # another library's agent sees that library's frames
        options["preprocessing"] = checkpoint.meta["preprocessing"]
    return Environment(env or named, {"frame_size": config.get("frame_size", checkpoint.agent.obs_shape[-1]),
                                      **options})


def _step_pattern(text: str) -> re.Pattern:
    """``--steps-from``: a regular expression with exactly one group."""
    try:
        pattern = re.compile(text)
    except re.error as error:
        raise UserError(f"--steps-from {text!r} is not a regular expression ({error})") from None
    if pattern.groups != 1:
        raise UserError(f"--steps-from {text!r} needs exactly one group, the step's digits, e.g. 'update_(\\d+)'; "
                        f"it has {pattern.groups}")
    return pattern


def _steps_of(paths: list[Path], pattern: re.Pattern, given: str | None) -> tuple[dict[int, Path], list[str]]:
    """The step of each checkpoint file from its name, and notes on the files left out. A file whose name holds no
    step takes the step its contents record (SB3's ``num_timesteps``: the final ``model.save`` beside the
    ``rl_model_<steps>_steps.zip`` files), and is left out with a note when another file already is that step."""
    named: dict[int, Path] = {}
    unnamed: list[Path] = []
    for path in paths:
        match = pattern.search(path.name)
        if match is None:
            unnamed.append(path)
            continue
        if not match.group(1) or not match.group(1).isdigit():
            raise UserError(f"the step pattern {pattern.pattern!r} found {match.group(1)!r} in {path.name}, not a "
                            "step (its group must match digits)")
        step = int(match.group(1))
        if step in named:
            raise UserError(f"{named[step].name} and {path.name} are both step {step}")
        named[step] = path
    notes = []
    for path in unnamed:
        step = load_any(path).meta.get("step")
        if step and step in named:
            notes.append(f"{path.name} left out: it is step {step:,}, as {named[step].name} is")
            continue
        if not step and (named or len(unnamed) > 1):
            hint = "match --steps-from" if given else "tell it with --steps-from REGEX (one group, the digits)"
            raise UserError(f"cannot tell the step of {path.name} from its name: {hint}")
        named[int(step or 0)] = path
    return dict(sorted(named.items())), notes


def _some(steps: list[int]) -> str:
    return ", ".join(map(str, steps[:5])) + (" ..." if len(steps) > 5 else "")
