"""Adapters to the outside: bsread streams (codec, in, out), cameras, image and durable files, the SFTP
model storage and Slurm (sbatch, sacct/squeue/scontrol, scancel through a local or SSH shell).

May import the base modules and ``model`` (a fetched model is loaded once before it replaces the
cached one); the stores' backends live in ``store``.
"""
