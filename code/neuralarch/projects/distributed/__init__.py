"""Project 10 (``m10-l06``): one DDP training script for MNIST, launched with ``torchrun`` in the
book and by ``srun torchrun`` on a SLURM GPU cluster (``train.sbatch``)."""
