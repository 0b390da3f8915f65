"""``vi_stream models list | show | register | promote | rollback | aliases | retrain | gate``: the
registry from a shell.

Each works on the store directly (``--store`` as ``run`` takes it; the same default), so
it needs no running daemon; daemons following an alias switch at their next poll.
"""
from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="the model registry: list, show, register, promote, rollback, aliases, "
                                      "retrain, gate")
    verbs = m.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=text)
        v.set_defaults(func=_on_registry(VERBS[name]))
        v.add_argument("--store", help="mongodb://..., or a local store folder (default: as `run`)")
        v.add_argument("--json", action="store_true", help="print JSON instead of text")
        return v

    v = verb("list", "registered versions, newest first, with their aliases")
    v.add_argument("--name", help="only this model")
    v = verb("show", "one version: hash, metadata, calibration scores")
    v.add_argument("name")
    v.add_argument("version", help="X.Y")
    v = verb("register", "check a model file (sizes, digest, load + self-check) and store it as NAME@X.Y")
    v.add_argument("file", nargs="?", help="the model file (or --sftp)")
    v.add_argument("--sftp", metavar="FILE_NAME", help="import SFTP_PROJECT_PATH/models/FILE_NAME (SFTP_* "
                                                       "settings, as fetch-model) instead of a local file")
    v.add_argument("--name", required=True)
    v.add_argument("--version", help="X.Y (default: the next minor version of NAME, or 1.0)")
    v.add_argument("--by", help="who (default user@host)")
    v.add_argument("--allow-unchecked", action="store_true",
                   help="register a file that has no digest (saved by an older vi_stream, or edited), with a "
                        "warning; the registry's hash binds it from then on")
    for name, text in (("promote", "point an alias at a version"),
                       ("rollback", "point an alias back at the version before its latest promotion")):
        v = verb(name, text)
        if name == "promote":
            v.add_argument("name")
            v.add_argument("version", help="X.Y")
            v.add_argument("--expected", help="refuse unless the alias points at this name@X.Y now "
                                              "(\"\" for an alias that points nowhere yet)")
            v.add_argument("--force", action="store_true", help="promote even when the gate finds a regression "
                                                                 "(recorded with the reason)")
        v.add_argument("--alias", default="production", help="default production")
        v.add_argument("--reason", required=name == "promote", default="rolled back from the command line",
                       help="why (kept in the alias log)")
        v.add_argument("--by", help="who (default user@host)")
    verb("aliases", "where each alias points, and the latest changes")
    v = verb("retrain", "fit a candidate on the training images plus the tiles verified good; register and gate it")
    v.add_argument("--images", required=True, help="folder of the base model's training images")
    v.add_argument("--from", dest="from_alias", default="production", help="the base model's alias (production)")
    v.add_argument("--alias", default="candidate", help="the alias the candidate gets (candidate)")
    v.add_argument("--name", help="default: the base model's name")
    v.add_argument("--version", help="X.Y (default: the next minor version)")
    v.add_argument("--by", help="who (default user@host)")
    v = verb("gate", "the promotion gate: freeze the verified tiles of now, or show the newest set")
    v.add_argument("action", choices=("freeze", "show"))
    v.add_argument("--by", help="who (default user@host)")


def _who(given: str | None) -> str:
    if given:
        return given
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return f"unknown@{socket.gethostname()}"


def _model_file(args: argparse.Namespace) -> tuple[str, str]:
    """(local path, source) of the file to register: the one named, or fetched over SFTP."""
    from vi_stream.errors import ConfigError
    if (args.file is None) == (args.sftp is None):
        raise ConfigError("give a model FILE or --sftp FILE_NAME (one of them)")
    if args.file is not None:
        return args.file, f"file:{args.file}"
    from vi_stream.service.config import model_cache_dir
    from vi_stream.io.sftp import fetch_configured
    return fetch_configured(args.sftp, model_cache_dir()), f"sftp:{args.sftp}"


def _summary(doc: dict) -> str:
    meta = doc.get("metadata", {})
    aliases = f"  [{', '.join(doc.get('aliases', []))}]" if doc.get("aliases") else ""
    return (f"{doc['name']}@{doc['version']}  {doc['sha256'][:12]}  {meta.get('backbone', '?')} tile "
            f"{meta.get('tile', '?')}  threshold {meta.get('threshold', float('nan')):.4g}  "
            f"{doc['registered_at']} by {doc['registered_by']}{aliases}")


def _gate_line(gate: dict | None) -> str:
    if not gate:
        return ""
    c, p = gate["candidate"], gate["current"]
    return (f"\ngate {gate['gate_set']}: recall {c['recall']:.3f} (was {p['recall']:.3f}), false alarms "
            f"{c['false_alarm_rate']:.3f} (was {p['false_alarm_rate']:.3f})" + ("; FORCED" if gate["forced"] else ""))


def _change(c: dict) -> str:
    state = "" if c.get("changed", True) else "  (already there: nothing changed)"
    return f"{c['at']}  {c['alias']}: {c['from'] or '-'} -> {c['to']}  {c['action']} by {c['by']}: {c['reason']}{state}"


def _list(args, reg, store):
    out = reg.versions(args.name)
    return out, "\n".join(_summary(d) for d in out) or "no models registered"


def _show(args, reg, store):
    out = reg.version(args.name, args.version)
    return out, json.dumps(out, indent=2)


def _register(args, reg, store):
    path, source = _model_file(args)
    with open(path, "rb") as f:
        data = f.read()
    out = reg.register(data, args.name, args.version, by=_who(args.by), source=source,
                       allow_unchecked=args.allow_unchecked)
    if out.get("unchecked"):
        print(f"vi_stream: warning: {out['name']}@{out['version']} has no digest: registered unchecked "
              "(--allow-unchecked)", file=sys.stderr)
    return out, "registered " + _summary(out)


def _promote(args, reg, store):
    from vi_stream.registry import retrain
    out = retrain.promote(reg, args.alias, args.name, args.version, args.reason, _who(args.by),
                          args.expected, args.force)
    return out, _change(out) + _gate_line(out.get("gate"))


def _rollback(args, reg, store):
    out = reg.rollback(args.alias, args.reason, _who(args.by))
    return out, _change(out)


def _aliases(args, reg, store):
    out = {"aliases": reg.aliases(), "changes": reg.changes(limit=20)}
    return out, "\n".join([f"{a} -> {t['name']}@{t['version']}" for a, t in out["aliases"].items()]
                          or ["no aliases"]) + "\n" + "\n".join(_change(c) for c in out["changes"])


def _retrain(args, reg, store):
    from vi_stream.registry import retrain
    out = retrain.retrain(reg, args.images, args.from_alias, args.alias, args.name, args.version, _who(args.by))
    return out, f"retrained: {_summary(out)} -> alias {args.alias}" + "".join(
        f"\ngate {g}: recall {m['recall']:.3f}, false alarms {m['false_alarm_rate']:.3f}"
        for g, m in (out.get("gate") or {}).items())


def _gate(args, reg, store):
    from vi_stream.errors import ConfigError
    from vi_stream.registry import retrain
    out = retrain.freeze_gate(store, _who(args.by)) if args.action == "freeze" else store.gate_sets.get_gate_set()
    if out is None:
        raise ConfigError("no gate set yet: verify tiles, then `vi_stream models gate freeze`")
    return out, (f"gate {out['id']}: {out['defect_tiles']} defect and {out['good_tiles']} good tiles, "
                 f"{out['created_at']} by {out['created_by']}")


VERBS = {"list": _list, "show": _show, "register": _register, "promote": _promote, "rollback": _rollback,
         "aliases": _aliases, "retrain": _retrain, "gate": _gate}


def _on_registry(verb):
    """The command for a verb: open the store, hand the verb its registry, print what it answers.

    The store and registry import here, not at the top: ``--help`` needs neither, and no verb but
    ``retrain`` needs the scorer (bench/startup.py)."""
    def command(args: argparse.Namespace) -> int:
        from vi_stream.errors import ConfigError
        from vi_stream.registry.versions import Registry
        from vi_stream.service.config import default_store
        from vi_stream.store.opening import open_store
        store = open_store(args.store or default_store())
        if store is None:
            raise ConfigError("the registry lives in a store: give --store mongodb://... or a folder, not 'off'")
        with store:
            out, text = verb(args, Registry(store), store)
        print(json.dumps(out, indent=2) if args.json else text, file=sys.stdout)
        return 0
    return command
