"""The REST routes, one module per resource; each ``add(app, api, ...)`` registers its own.

:mod:`.control` (start, stop, settings, the running model), :mod:`.results` (modules, images, history),
:mod:`.reviews` (corrected masks, verified tiles, decisions),
:mod:`.report` (the per-shift report, JSON and CSV), :mod:`.models` (registry, aliases, gate, retraining,
shadow, drift), :mod:`.batches` (``vi_stream batch`` records) and :mod:`.page` (the operator's page, its
login, the live feed, the API description). None of them checks credentials or catches errors: the app's
plugins do (:class:`vi_stream.web.auth.CredentialsCheck`, :class:`vi_stream.web.replies.Replies`).
"""
