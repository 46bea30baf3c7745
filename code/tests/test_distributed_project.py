"""Tests of Project 10: the SLURM script is well-formed and runs the book's command."""

from __future__ import annotations

import json
import subprocess

import pytest

from neuralarch.projects.distributed.cluster import (
    MODULE,
    SBATCH_FILE,
    TRAIN_FLAGS,
    book_command,
    flag_names,
    parse_sbatch,
)
from neuralarch.scale.launch import free_port, worker_env


def test_sbatch_parses_with_bash():
    done = subprocess.run(["bash", "-n", str(SBATCH_FILE)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_sbatch_directives_are_well_formed():
    script = parse_sbatch()
    assert script.directives["nodes"] == "2"
    assert script.directives["ntasks-per-node"] == "1"  # one torchrun per node
    assert {"job-name", "gpus-per-node", "time"} <= set(script.directives)


def test_malformed_directive_is_rejected(tmp_path):
    bad = tmp_path / "bad.sbatch"
    bad.write_text("#!/bin/bash\n#SBATCH nodes 2\nsrun torchrun -m x\n")
    with pytest.raises(ValueError, match="malformed directive"):
        parse_sbatch(bad)


def test_srun_line_is_the_command_the_book_runs(tmp_path):
    srun = parse_sbatch().srun
    assert srun[:2] == ["srun", "torchrun"]
    book = book_command(tmp_path / "r.json", ckpt_dir=tmp_path / "ck")
    cluster = srun[1:]
    assert flag_names(cluster) == flag_names(book[1:])  # same flags, same order
    assert cluster[cluster.index("-m") + 1] == book[book.index("-m") + 1] == MODULE
    script_args = cluster[cluster.index("-m") + 2:]
    book_args = book[book.index("-m") + 2:]
    assert flag_names(script_args) == flag_names(book_args)
    assert script_args[:len(TRAIN_FLAGS)] == list(TRAIN_FLAGS) == book_args[:len(TRAIN_FLAGS)]
    launcher = dict(w.split("=", 1) for w in cluster[1:cluster.index("-m")])
    assert launcher["--rdzv-backend"] == "c10d" and launcher["--max-restarts"] == "1"


def test_training_script_runs_on_two_processes(tmp_path):
    out = tmp_path / "result.json"
    command = book_command(out, rdzv_endpoint=f"127.0.0.1:{free_port()}",
                           extra=("--limit-train", "1024", "--epochs", "3", "--lr", "1e-2"))
    done = subprocess.run(command, capture_output=True, text=True, timeout=150,
                          env=worker_env(), check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["train_examples"] == 1024
    assert result["train_loss"][-1] < result["train_loss"][0]
    assert result["val_accuracy"] > 0.5  # far above chance (0.1) after 24 short steps
