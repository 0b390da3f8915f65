"""bench/README.md and README's headline are what bench/results/*.json say (no figure typed twice)."""
import json
import os
import re
import subprocess
import sys

from .helpers import ROOT


def test_generated_benchmark_pages_are_up_to_date():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "report.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_every_results_file_has_a_section():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import report
    finally:
        sys.path.pop(0)
    page = report.bench_readme()
    for name in sorted(os.listdir(report.RESULTS)):
        if name.endswith(".json"):
            with open(os.path.join(report.RESULTS, name)) as f:
                command = json.load(f).get("command", "")
            made_by = re.search(r"bench/(\w+)\.py", command)      # a second record of one script (an A/B)
            script = made_by.group(1) if made_by else name[:-5]
            assert f"bench/{script}.py" in page and (not made_by or command in page), name


def test_a_record_made_with_other_lattice_maps_is_not_shown_as_the_defaults():
    """The maps a fit computes and the reach it spreads them over are code, not settings: a record made
    before ``thin`` (its config names no maps) or with other maps, or before the reach (it names none: 0),
    is labelled with them; one with today's maps and reach is the defaults."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import report
    finally:
        sys.path.pop(0)
    from vi_stream.model import ModelConfig
    from vi_stream.model.lattice import MAPS, REACH
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(ModelConfig()).items() if k != "seed"}
    assert report._settings((), config) == "lattice_maps=before-thin lattice_reach=0"
    today = {**config, "lattice_maps": list(MAPS), "lattice_reach": REACH}
    assert report._settings((), today) == "(defaults)"
    assert report._settings((), {**config, "lattice_maps": list(MAPS)}) == "lattice_reach=0"
    assert report._settings((), {**today, "lattice_maps": ["moved", "cut"]}) == "lattice_maps=moved,cut"
    assert report._settings((), {**config, "lattice": False}) == "lattice=False"     # no maps without the lattice
    # a sealed run's maps and reach come from its line models' calibrations
    cal = {"enabled": True, "maps": list(MAPS), "reach_px": REACH}
    run = {"run": {"config": config}, "line_models": {"1": {"lattice": cal}}}
    assert report._settings((), report._sealed_config(run)) == "(defaults)"
    run["line_models"]["1"]["lattice"].pop("reach_px")
    assert report._settings((), report._sealed_config(run)) == "lattice_reach=0"
    # a fit with the setting on that found its lattice on too few good images computed no maps
    assert report._settings((), {**config, "lattice_maps": []}) == "lattice_maps=none"
    run["line_models"]["1"]["lattice"] = {"enabled": False, "reason": "lattice found on 3 of 10 good images"}
    assert report._settings((), report._sealed_config(run)) == "lattice_maps=none"
