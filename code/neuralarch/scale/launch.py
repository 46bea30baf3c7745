"""Build the exact ``torchrun`` command line and run it as a bounded subprocess.

Introduced in lesson 10.1 (``m10-l01``). The book never writes its own launcher: every
distributed run is ``torchrun`` started by :func:`run_torchrun`, on 127.0.0.1, with one thread
per worker, a free port chosen at run time, and a timeout so a hung collective cannot hang the
build.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TORCHRUN = Path(sys.executable).with_name("torchrun")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TorchrunSpec:
    """What ``torchrun`` needs: processes per node, nodes, rendezvous and restarts."""

    nproc_per_node: int = 2
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = "127.0.0.1:29500"
    rdzv_id: str = "neuralarch"
    max_restarts: int = 0
    extra: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("nproc_per_node", "nnodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank must be in [0, nnodes={self.nnodes}), "
                             f"got {self.node_rank}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if ":" not in self.rdzv_endpoint:
            raise ValueError(f"rdzv_endpoint must be HOST:PORT, got {self.rdzv_endpoint!r}")


def torchrun_command(target: str, args: Sequence[str] = (),
                     spec: TorchrunSpec | None = None) -> list[str]:
    """Return the ``torchrun`` argv that runs ``target`` (a ``-m module`` or a file) under ``spec``.

    ``target`` is a module name such as ``neuralarch.scale.ddp_train`` (run with ``-m``) or a path
    ending in ``.py``. The rendezvous is always c10d, the one a multi-node cluster uses too.
    """
    spec = spec or TorchrunSpec()
    command = [
        str(TORCHRUN),
        f"--nnodes={spec.nnodes}",
        f"--nproc-per-node={spec.nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={spec.rdzv_endpoint}",
        f"--rdzv-id={spec.rdzv_id}",
        f"--max-restarts={spec.max_restarts}",
    ]
    if spec.nnodes > 1:
        command.append(f"--node-rank={spec.node_rank}")
    command += list(spec.extra)
    command += [target] if target.endswith(".py") else ["-m", target]
    return command + list(args)


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for workers: one thread each, loopback only, package importable."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # .../code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
                "MASTER_ADDR": "127.0.0.1", "TORCH_CPP_LOG_LEVEL": "ERROR",
                # A restarted group must not read the dead group's addresses from the
                # rendezvous store it would otherwise share with the agent (torch 2.x).
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    env.update(extra or {})
    return env


def run_torchrun(target: str, args: Sequence[str] = (), spec: TorchrunSpec | None = None,
                 timeout: float = 120.0,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``torchrun`` on ``target`` and return the finished process; raise if it failed.

    A free port is chosen when ``spec`` is ``None``. On a non-zero exit the error message holds the
    tail of the workers' output, which is where the real error is.
    """
    spec = spec or TorchrunSpec(rdzv_endpoint=f"127.0.0.1:{free_port()}")
    command = torchrun_command(target, args, spec)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=worker_env(env), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with {done.returncode}: {' '.join(command)}\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return done


def run_nodes(target: str, args_per_node: Sequence[Sequence[str]], nproc_per_node: int = 1,
              timeout: float = 120.0) -> list[subprocess.CompletedProcess[str]]:
    """Start one ``torchrun`` per "node" on this machine, joined by one c10d rendezvous.

    This is exactly what a cluster does, with every node's ``torchrun`` pointing at the same
    ``--rdzv-endpoint`` and ``--rdzv-id``; here the nodes are two processes on 127.0.0.1.
    """
    nnodes = len(args_per_node)
    endpoint = f"127.0.0.1:{free_port()}"
    procs = []
    for rank, args in enumerate(args_per_node):
        spec = TorchrunSpec(nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=rank,
                            rdzv_endpoint=endpoint, rdzv_id=f"nodes-{endpoint}")
        procs.append(subprocess.Popen(torchrun_command(target, args, spec), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      env=worker_env()))
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for done in results:
        if done.returncode != 0:
            raise RuntimeError(f"a node's torchrun exited with {done.returncode}:\n"
                               f"{done.stdout[-3000:]}")
    return results
