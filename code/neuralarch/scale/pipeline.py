"""GPipe pipeline parallelism with point-to-point ``send``/``recv`` between stage processes.

Introduced in lesson 10.2 (``m10-l02``). Each ``torchrun`` worker holds one stage (a slice of
the layers). A batch is cut into ``m`` micro-batches; stage ``s`` receives a micro-batch's
activations from ``s - 1``, runs its layers, and sends the result on; the backward pass runs
the same way in reverse, with gradients accumulated over the micro-batches. A stage's compute
time is *modelled* with ``time.sleep`` (forward ``t``, backward ``2t``), so the timeline - and
the idle "bubble" - can be measured on a 2-core CPU with up to 4 stages. Run with
``torchrun --nproc-per-node=4 -m neuralarch.scale.pipeline --out pipe.pt``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """Return GPipe's idle fraction ``(p - 1) / (m + p - 1)`` for equal-time stages."""
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"stages and micro_batches must be >= 1, got {stages}, {micro_batches}")
    return (stages - 1) / (micro_batches + stages - 1)


def build_stage(stage: int, width: int = 16, seed: int = 0) -> nn.Module:
    """Return stage ``stage`` of the model: one Linear + tanh, seeded by its position."""
    torch.manual_seed(seed * 1000 + stage)
    return nn.Sequential(nn.Linear(width, width), nn.Tanh())


def make_batch(batch: int = 32, width: int = 16,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the fixed inputs (B, W) and regression targets (B, W) every stage agrees on."""
    gen = torch.Generator().manual_seed(seed + 7)
    return torch.randn(batch, width, generator=gen), torch.randn(batch, width, generator=gen)


def reference_gradients(stages: int, width: int = 16, batch: int = 32,
                        seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Gradients of the whole model in one process on the whole batch (what GPipe must match)."""
    model = nn.Sequential(*[build_stage(s, width, seed) for s in range(stages)])
    x, y = make_batch(batch, width, seed)
    nn.functional.mse_loss(model(x), y).backward()
    return [{name: p.grad.clone() for name, p in stage.named_parameters()} for stage in model]


def gpipe_step(stage_module: nn.Module, rank: int, stages: int, micro_batches: int,
               batch: int, width: int, seed: int,
               stage_seconds: float) -> list[tuple[str, int, float, float]]:
    """Run one GPipe step (all forwards, then all backwards) on this rank's stage.

    Returns the timeline of this stage as ``(kind, micro_batch, start, end)`` in seconds of
    ``time.perf_counter``. Gradients accumulate in ``stage_module``'s parameters.
    """
    if batch % micro_batches:
        raise ValueError(f"batch={batch} must be divisible by micro_batches={micro_batches}")
    x, y = make_batch(batch, width, seed)
    xs, ys = x.chunk(micro_batches), y.chunk(micro_batches)  # m x (B/m, W)
    inputs, outputs, events, pending = [], [], [], []
    for i in range(micro_batches):  # forward, micro-batch by micro-batch
        if rank == 0:
            a = xs[i]
        else:
            a = torch.empty(batch // micro_batches, width)
            dist.recv(a, src=rank - 1)
            a.requires_grad_(True)
        start = time.perf_counter()
        out = stage_module(a)  # (B/m, W)
        time.sleep(stage_seconds)  # the modelled forward compute of this stage
        events.append(("F", i, start, time.perf_counter()))
        inputs.append(a)
        outputs.append(out)
        if rank < stages - 1:
            pending.append(dist.isend(out.detach(), dst=rank + 1))
    for i in reversed(range(micro_batches)):  # backward, last micro-batch first
        if rank == stages - 1:
            # mean over the whole batch = mean of the micro-batch means / m
            grad_out = None
            target = nn.functional.mse_loss(outputs[i], ys[i]) / micro_batches
        else:
            grad_out = torch.empty(batch // micro_batches, width)
            dist.recv(grad_out, src=rank + 1)
            target = outputs[i]
        start = time.perf_counter()
        target.backward(grad_out)  # accumulates into the stage's .grad
        time.sleep(2 * stage_seconds)  # backward costs about twice the forward
        events.append(("B", i, start, time.perf_counter()))
        if rank > 0:
            pending.append(dist.isend(inputs[i].grad, dst=rank - 1))
    for handle in pending:
        handle.wait()
    return events


def library_gpipe_step(stage_module: nn.Module, rank: int, stages: int, micro_batches: int,
                       batch: int, width: int, seed: int) -> None:
    """The same GPipe step with ``torch.distributed.pipelining`` (``ScheduleGPipe``)."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    x, y = make_batch(batch, width, seed)
    stage = PipelineStage(stage_module, rank, stages, torch.device("cpu"))
    schedule = ScheduleGPipe(stage, n_microbatches=micro_batches,
                             loss_fn=nn.functional.mse_loss)  # averages over micro-batches
    if rank == 0:
        schedule.step(x)
    elif rank == stages - 1:
        schedule.step(target=y)
    else:
        schedule.step()


def measured_bubble(timelines: list[list[tuple[str, int, float, float]]]) -> dict[str, float]:
    """Return total time, mean busy time and the idle fraction ``1 - busy / total``."""
    start = min(e[2] for line in timelines for e in line)
    end = max(e[3] for line in timelines for e in line)
    busy = sum(e[3] - e[2] for line in timelines for e in line) / len(timelines)
    return {"total": end - start, "busy": busy, "bubble": 1.0 - busy / (end - start)}


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``torchrun``: one GPipe step per micro-batch count; rank 0 saves results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--stage-seconds", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--library", action="store_true",
                        help="run torch.distributed.pipelining's ScheduleGPipe (no timeline)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, stages = dist.get_rank(), dist.get_world_size()
    results, grads = [], {}
    # warm-up: the first send/recv opens the connections and starts autograd's threads
    gpipe_step(build_stage(rank, args.width), rank, stages, 1, args.batch, args.width, 0, 0.0)
    for m in args.micro_batches:
        stage_module = build_stage(rank, args.width, args.seed)
        dist.barrier()
        if args.library:
            library_gpipe_step(stage_module, rank, stages, m, args.batch, args.width, args.seed)
            events = []  # the library's schedule is not timed
        else:
            events = gpipe_step(stage_module, rank, stages, m, args.batch, args.width,
                                args.seed, args.stage_seconds)
        mine = {name: p.grad.clone() for name, p in stage_module.named_parameters()}
        every: list = [None] * stages
        dist.all_gather_object(every, {"events": events, "grads": mine})
        timelines = [item["events"] for item in every]
        if not args.library:
            results.append({"micro_batches": m, "stages": stages, "timelines": timelines,
                            "formula": bubble_fraction(stages, m),
                            **measured_bubble(timelines)})
        grads[m] = [item["grads"] for item in every]
    if rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(grads, args.out)
        args.out.with_suffix(".json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
