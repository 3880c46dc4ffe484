"""What a newcomer meets first: --version, --help with defaults, early stopping that keeps
the best epoch, short lines, legible progress."""

import argparse

import pytest

from gpunn import cli


def _run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys):
    from gpunn import __version__

    code, out, err = _run(["--version"], capsys)
    assert code == 0 and out == f"gpunn {__version__}\n" and not err


def _parsers():
    top = cli.build_parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return [("gpunn", top), *subs.choices.items()]


@pytest.mark.parametrize("name,parser", _parsers(), ids=lambda p: p if isinstance(p, str)
                         else "")
def test_every_help_names_the_defaults(name, parser, capsys):
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:
        default = action.default
        if not action.option_strings or any(default is v for v in (None, False,
                                                                   argparse.SUPPRESS)):
            continue
        assert action.help, (name, action.option_strings)
        assert f"(default: {default})" in text or "default" in action.help, (
            name, action.option_strings, text)


def test_train_help_names_every_default(capsys):
    code, out, _ = _run(["train", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    for value in ("0.01", "30", "adam", "relu", "64", "0.2", "float32", "0"):
        assert f"(default: {value})" in text, value
    # --layers: the hidden layers each built-in dataset gets.
    for name, sizes in cli.DEFAULT_LAYERS.items():
        assert f"{name} {','.join(map(str, sizes))}" in text, name
    assert "64,64 for --data" in text


def test_usage_errors_stay_one_line(capsys):
    code, out, err = _run(["train", "--epochs", "x"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--epochs" in err
    assert "expected an integer, got 'x'" in err
