"""Scaling and distributed training (Module 10): ``torchrun`` launches, DDP, pipeline stages,
memory accounts for ZeRO/FSDP, mixed precision, activation checkpointing and profiling.

Introduced in lesson 10.1 (``m10-l01``). Workers always run as ``torchrun`` subprocesses on
127.0.0.1 with the gloo backend on CPU (NCCL on GPUs); import from the concept modules."""
