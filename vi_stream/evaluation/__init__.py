"""Evaluation: synthetic modules with exact masks, detection metrics, offline train/score/evaluate,
and the camera simulator.

May import the base modules, ``model`` and ``io``; nothing else imports it but the commands,
the tests and the benchmarks (synthetic data never enters the daemon's path).
"""
