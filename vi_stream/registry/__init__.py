"""Models with a history: versions, aliases and what judges them.

Owns model versions and aliases over any store (:mod:`.versions`), a daemon following an alias
(:mod:`.follower`), retraining from verified tiles and the promotion gate (:mod:`.retrain`), shadow
mode (:mod:`.shadow`) and the drift watch (:mod:`.drift`). May import the base modules, ``model``,
``io``, ``store`` (its protocols and records) and ``processing.settings`` (names and versions are
checked as every setting is); never ``web``, ``service`` or ``cli``.
"""
