"""Commands that read a dataset say so when --data is missing, before touching anything."""

from __future__ import annotations

import pytest

from deepshrink.cli.main import main

# Each command with its other required options filled in.
COMMANDS = {
    "train": ["train", "--model", "digits_cnn", "--out", "OUT"],
    "eval": ["eval", "--model", "digits_cnn"],
    "quantize": ["quantize", "--model", "digits_cnn", "--out", "OUT"],
    "distill": ["distill", "--student", "digits_cnn", "--teacher", "digits_cnn", "--out", "OUT"],
    "search": ["search", "--model", "digits_cnn", "--out", "OUT"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_missing_data_is_a_usage_error(name, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(out) if arg == "OUT" else arg for arg in COMMANDS[name]]) == 2
    assert "Missing option '--data'" in capsys.readouterr().err
    assert not out.exists()
