"""Scaling out: a backlog on a Slurm cluster (:mod:`.batch`) and several workers merged into one
stream (:mod:`.merge`).

May import the base modules, ``model``, ``io`` (streams, SFTP, Slurm), ``processing`` (the
pipeline a batch task runs), ``store`` (a batch's writer and spool), ``web.server`` and ``web.replies`` (the merger's
status server and its replies, the daemon's envelope) and ``service.systemd`` (the merger speaks sd_notify as the daemon does); nothing else
of ``service``, nor ``cli``.
"""
