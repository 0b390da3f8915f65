"""Scaling out: a backlog on a Slurm cluster (:mod:`.batch`) and several workers merged into one
stream (:mod:`.merge`).

May import the base modules, ``model``, ``io`` (streams, SFTP, Slurm), ``processing`` (the
pipeline a batch task runs), ``store`` (a batch's writer and spool) and ``web.server`` (the merger's
status server); never ``service`` or ``cli``.
"""
