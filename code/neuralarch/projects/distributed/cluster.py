"""The cluster side of Project 10: read ``train.sbatch`` and build the book's matching command.

Introduced in Project 10 (``m10-l06``). The book runs the training script with
:func:`book_command`; the tests parse ``train.sbatch`` with :func:`parse_sbatch` and check that
its ``srun torchrun`` line uses the same module and flags, so the two cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from neuralarch.scale.launch import TorchrunSpec, torchrun_command

SBATCH_FILE = Path(__file__).with_name("train.sbatch")
MODULE = "neuralarch.projects.distributed.train"
TRAIN_FLAGS = ("--epochs", "2", "--batch-size", "64", "--lr", "2e-3")
_DIRECTIVE = re.compile(r"^#SBATCH\s+--([a-z][a-z-]*)(=(\S+))?\s*$")


@dataclass(frozen=True)
class SbatchScript:
    """A parsed batch script: its ``#SBATCH`` directives and the ``srun`` command's words."""

    directives: dict[str, str]
    srun: list[str]


def parse_sbatch(path: str | Path = SBATCH_FILE) -> SbatchScript:
    """Return the directives and the (continuation-joined) ``srun`` line of a batch script.

    Raises ``ValueError`` for a malformed ``#SBATCH`` line or a script without ``srun``.
    """
    text = Path(path).read_text()
    directives = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#SBATCH"):
            match = _DIRECTIVE.match(line)
            if match is None:
                raise ValueError(f"{path}:{number}: malformed directive {line!r}; "
                                 "expected '#SBATCH --name=value' or '#SBATCH --flag'")
            directives[match.group(1)] = match.group(3) or ""
    joined = text.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines() if line.strip().startswith("srun ")]
    if len(lines) != 1:
        raise ValueError(f"{path} must contain exactly one srun line, found {len(lines)}")
    return SbatchScript(directives=directives, srun=shlex.split(lines[0]))


def book_command(out: Path, nproc_per_node: int = 2, rdzv_endpoint: str = "127.0.0.1:29500",
                 ckpt_dir: Path | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """Return the ``torchrun`` argv the book runs: the sbatch line, sized for one CPU machine."""
    args = list(TRAIN_FLAGS) + list(extra)
    if ckpt_dir is not None:
        args += ["--ckpt-dir", str(ckpt_dir)]
    args += ["--out", str(out)]
    spec = TorchrunSpec(nproc_per_node=nproc_per_node, rdzv_endpoint=rdzv_endpoint,
                        rdzv_id="project10", max_restarts=1)
    return torchrun_command(MODULE, args, spec)


def flag_names(words: list[str]) -> list[str]:
    """Return the ``--flag`` names of an argv in order, without their values."""
    return [w.split("=", 1)[0] for w in words if w.startswith("--")]
