"""Command-line flags generated from dataclasses: a field is a flag with its docstring as help and its default."""

import argparse
from dataclasses import dataclass, field

import pytest

from cli import build_parser, main
from interp import options
from interp.errors import UserError
from trainers.config import TrainConfig


@dataclass(frozen=True)
class Example:
    count: int = 3
    """how many"""
    rate: float = 0.5
    """how fast, in %"""
    names: tuple[str, ...] = ("a", "b")
    """which ones"""
    verbose: bool = False
    """say more"""
    mode: str | None = field(default=None, metadata={"choices": ("x", "y"), "flags": ("--mode", "--old-mode")})
    """the mode"""
    settings: dict = field(default_factory=dict, metadata={"key_values": True, "flags": ("--setting",)})
    """a setting"""
    hidden: int = field(default=1, metadata={"cli": False})
    """not a flag"""
    workers: int | None = None
    """how many workers (none: chosen later)"""


@dataclass(frozen=True)
class Extended(Example):
    extra: int = 7
    """a field added later"""


def parse(cls, argv):
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, cls)
    return parser, parser.parse_args(argv)


def test_each_field_is_a_flag_with_its_docstring_and_default():
    parser, _ = parse(Extended, [])
    text = parser.format_help()
    for flag, words in (("--count", "how many (default: 3)"), ("--rate", "how fast, in % (default: 0.5)"),
                        ("--names", "which ones (default: a,b)"), ("--verbose", "say more"),
                        ("--old-mode", "the mode"), ("--setting", "a setting (repeatable)"),
                        ("--extra", "a field added later (default: 7)"),
                        ("--workers", "how many workers (none: chosen later) (default: none)")):
        assert flag in text and words in " ".join(text.split()), flag
    assert "--hidden" not in text
    assert options.field_docs(Extended)["count"] == "how many"


def test_parsed_flags_build_the_dataclass_and_the_rest_keep_their_defaults():
    _, args = parse(Example, ["--count", "5", "--names", "c,d", "--verbose", "--old-mode", "y",
                              "--setting", "depth=3", "--setting", "name=deep", "--workers", "2"])
    built = options.build(Example, args)
    assert built == Example(count=5, names=("c", "d"), verbose=True, mode="y", settings={"depth": 3, "name": "deep"},
                            workers=2)
    _, args = parse(Example, [])
    assert options.build(Example, args) == Example()
    with pytest.raises(SystemExit):
        parse(Example, ["--mode", "z"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        options.key_values(["novalue"])


def test_train_flags_are_the_config_fields():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {action.dest for action in train._actions}
    generated = {f for f in TrainConfig.__dataclass_fields__ if TrainConfig.__dataclass_fields__[f].metadata.get(
        "cli", True)}
    assert generated <= flags and {"arch", "out", "resume"} <= flags
    assert "IMPALA ran it" in train.format_help()  # the optimizer field's docstring


def test_stage_commands_take_their_options_flags(capsys):
    assert main(["atom", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--initial-relevance {value,one}" in text or "--initial-relevance {one,value}" in text
    assert "--seed-output" in text and "comma-separated saliency methods whose object profiles" in text
