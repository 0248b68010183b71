"""The CLI's conventions (#16): --version, '-' for standard input, --fail-on's exit code 3,
flags shown as flags in every --help, shell completion, "MME/day", and the compiled-engine
cache behind `cds check` (a hit is the same engine; a changed file or a corrupt cache file
is a fresh build)."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shutil
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import cds
from cds.cli import app
from cds.engine import cache as engine_cache
from cds.engine.cache import cache_dir, cached_engine, engine_key
from cds.engine.evaluator import Engine, load_engine
from cds.io import read_patient
from cds.knowledge.store import default_knowledge
from cds.rules.registry import bundled_rulesets

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "examples" / "patient-oxycodone-fentanyl.json"
NATIVE = ROOT / "examples" / "patient-native.json"
AS_OF = ["--as-of", "2026-11-26"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own engine cache (never the user's)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CDS_CACHE_DIR", str(folder))
    return folder


def cli(*args: str, input: bytes | str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


# -- --version, completion, flags ----------------------------------------------------------------

def test_version_prints_the_package_and_the_knowledge_version() -> None:
    r = cli("--version")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"cds {cds.__version__} (knowledge {default_knowledge().version})"


def test_shell_completion_is_offered() -> None:
    r = cli("--help")
    assert r.exit_code == 0
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


def test_no_help_shows_a_type_after_a_flag() -> None:
    """Every command's and group's --help: a flag (--resume, --quiet, --help, ...) takes no
    value, so no `<bool>` follows it."""
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("check",) in paths and ("review", "user", "add") in paths
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, (path, r.output)
        assert "<bool>" not in r.stdout, (path, r.stdout)
        assert "--help" in r.stdout
    r = runner.invoke(app, ["panel", "--help"], env={"COLUMNS": "200"})
    resume = next(line for line in r.stdout.splitlines() if "--resume" in line)
    assert "Finish an interrupted run" in resume and "<" not in resume


# -- '-' is standard input -----------------------------------------------------------------------

def test_check_reads_standard_input() -> None:
    from_file = cli("check", str(BUNDLE), *AS_OF, "--format", "json")
    from_stdin = cli("check", "-", *AS_OF, "--format", "json", input=BUNDLE.read_bytes())
    assert from_file.exit_code == 0 and from_stdin.exit_code == 0, from_stdin.output
    assert json.loads(from_stdin.stdout) == json.loads(from_file.stdout)
    native = cli("check", "-", *AS_OF, "--format", "json", input=NATIVE.read_bytes())
    assert native.exit_code == 0, native.output
    assert json.loads(native.stdout)["patient"] == read_patient(NATIVE).id


def test_bad_standard_input_is_one_line_naming_it() -> None:
    r = cli("check", "-", *AS_OF, input=b'{"resourceType": "Bundle", ')
    assert r.exit_code == 2
    assert r.stderr.startswith("error: <stdin>") and "not valid JSON" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_explain_reads_standard_input() -> None:
    from_file = cli("explain", str(BUNDLE), "--rule", "opioid-safety/mme-90", *AS_OF)
    from_stdin = cli("explain", "-", "--rule", "opioid-safety/mme-90", *AS_OF,
                     input=BUNDLE.read_bytes())
    assert from_stdin.exit_code == 0, from_stdin.output
    assert from_stdin.stdout == from_file.stdout
    assert "FIRED" in from_stdin.stdout


# -- --fail-on -----------------------------------------------------------------------------------

def _severities(path: Path) -> set[str]:
    r = cli("check", str(path), *AS_OF, "--format", "json")
    return {a["severity"] for a in json.loads(r.stdout)["alerts"]}


def test_fail_on_exits_3_at_or_above_the_severity_and_0_below() -> None:
    have = _severities(BUNDLE)
    assert "high" in have and "critical" not in have  # what the cases below rest on
    for severity, code in (("high", 3), ("moderate", 3), ("info", 3), ("critical", 0)):
        r = cli("check", str(BUNDLE), *AS_OF, "--fail-on", severity)
        assert r.exit_code == code, (severity, r.output)
        assert "alert(s)" in r.stdout  # the result is printed either way
    r = cli("check", str(BUNDLE), *AS_OF, "--format", "json", "--fail-on", "high")
    assert r.exit_code == 3 and json.loads(r.stdout)["alerts"]  # the JSON is complete
    assert cli("check", str(BUNDLE), *AS_OF).exit_code == 0  # without --fail-on: 0


def test_fail_on_with_db_leaves_out_alerts_a_standing_decision_covers(tmp_path: Path) -> None:
    """A pharmacist accepted every high alert: the scripted check passes, and still prints
    them with their decisions; without the store it fails as before."""
    db = str(tmp_path / "d.sqlite3")
    r = cli("check", str(BUNDLE), *AS_OF, "--format", "json", "--db", db)
    doc = json.loads(r.stdout)
    high = [a for a in doc["alerts"] if a["severity"] in ("critical", "high")]
    assert high and r.exit_code == 0
    for a in high:
        d = cli("review", "decide", doc["patient"], a["key"], "--state", "accepted",
                "--note", "plan agreed", "--db", db, "--author", "pharmacist.kim")
        assert d.exit_code == 0, d.output
    r = cli("check", str(BUNDLE), *AS_OF, "--format", "json", "--db", db, "--fail-on", "high")
    assert r.exit_code == 0, r.output
    shown = {a["key"]: a for a in json.loads(r.stdout)["alerts"]}
    assert all(shown[a["key"]]["status"] == "unchanged"
               and shown[a["key"]]["decision"]["state"] == "accepted" for a in high)
    assert cli("check", str(BUNDLE), *AS_OF, "--fail-on", "high").exit_code == 3
    # a lower alert without a decision still fails a lower bar
    assert cli("check", str(BUNDLE), *AS_OF, "--db", db, "--fail-on", "info").exit_code == 3


def test_fail_on_refuses_an_unknown_severity() -> None:
    r = cli("check", str(BUNDLE), *AS_OF, "--fail-on", "severe")
    assert r.exit_code == 2
    assert "critical" in r.output and "info" in r.output


def test_exit_codes_are_documented() -> None:
    import cds.cli

    doc = cds.cli.__doc__ or ""
    for code in ("0", "1", "2", "3", "4"):
        assert re.search(rf"^\s+{code}\s", doc, re.M), code
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "--fail-on" in readme and "3" in readme


# -- MME/day -------------------------------------------------------------------------------------

def test_check_says_mme_per_day() -> None:
    r = runner.invoke(app, ["check", str(BUNDLE), *AS_OF], env={"COLUMNS": "250"})
    assert r.exit_code == 0
    assert "MME 120.0 MME/day" in r.stdout
    # "mg/day" only in a drug's own daily dose of the MME arithmetic ("40 mg/day x 1.5 = 60"),
    # never for an MME total or threshold
    text = " ".join(r.stdout.split())
    for m in re.finditer(r"mg/day", text):
        assert re.match(r" x [\d.]+ = ", text[m.end():]), text[m.start() - 60:m.end() + 30]
    assert not re.search(r"MME[^.;:]{0,20}\bmg/day", text)


# -- the compiled-engine cache -------------------------------------------------------------------

def _results(engine: Engine) -> list[dict[str, Any]]:
    patients = [read_patient(BUNDLE), read_patient(NATIVE)]
    return [engine.evaluate(p, as_of=date(2026, 11, 26)).to_dict() for p in patients]


def test_a_cache_hit_is_the_same_engine_as_a_fresh_build(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "engines"
    built = cached_engine(folder=folder)  # a miss: built and written
    files = list(folder.glob("engine-*.pickle"))
    assert len(files) == 1
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    def no_build(*args: Any, **kwargs: Any) -> Engine:
        raise AssertionError("a cache hit must not build the engine")

    monkeypatch.setattr("cds.engine.evaluator.load_engine", no_build)
    hit = cached_engine(folder=folder)
    monkeypatch.undo()
    assert hit is not built and isinstance(hit, Engine)
    assert hit.pack_refs == built.pack_refs == load_engine().pack_refs
    assert [p.digest for p in hit.packs] == [p.digest for p in built.packs]
    assert hit.kb.digest == built.kb.digest
    assert _results(hit) == _results(built) == _results(load_engine())


def test_the_cli_uses_the_cache_and_gives_the_same_output(_private_cache: Path) -> None:
    first = cli("check", str(BUNDLE), *AS_OF, "--format", "json")
    assert len(list(_private_cache.glob("engine-*.pickle"))) == 1
    second = cli("check", str(BUNDLE), *AS_OF, "--format", "json")
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout
    table = [cli("check", str(BUNDLE), *AS_OF).stdout for _ in range(2)]
    assert table[0] == table[1]


def _copy_pack(tmp_path: Path) -> Path:
    root = tmp_path / "rulesets"
    shutil.copytree(bundled_rulesets() / "cns-burden", root / "cns-burden")
    return root


def test_a_changed_pack_file_invalidates_the_cache(tmp_path: Path) -> None:
    root = _copy_pack(tmp_path)
    folder = tmp_path / "engines"
    before = cached_engine(["cns-burden"], roots=[root], folder=folder)
    key = engine_key(["cns-burden"], [root], "indexed", before.max_medications)
    rule_file = sorted((root / "cns-burden" / "rules").glob("*.yaml"))[0]
    text = rule_file.read_text(encoding="utf-8")
    summary = re.search(r"summary: *(['\"]?)(.+?)\1\s*$", text, re.M)
    assert summary
    rule_file.write_text(text.replace(summary.group(2), summary.group(2) + " (site edit)", 1),
                         encoding="utf-8")
    assert engine_key(["cns-burden"], [root], "indexed", before.max_medications) != key
    after = cached_engine(["cns-burden"], roots=[root], folder=folder)
    assert after.packs[0].digest != before.packs[0].digest
    assert any(r.rule.summary.endswith(" (site edit)") for p in after.packs for r in p.rules)
    assert len(list(folder.glob("engine-*.pickle"))) == 2
    # and back: the first file is used again, the same engine as before the edit
    rule_file.write_text(text, encoding="utf-8")
    again = cached_engine(["cns-burden"], roots=[root], folder=folder)
    assert [p.digest for p in again.packs] == [p.digest for p in before.packs]


def test_a_new_file_in_a_rulesets_root_invalidates_the_cache(tmp_path: Path) -> None:
    root = _copy_pack(tmp_path)
    key = engine_key(None, [root], "indexed", 300)
    (root / "cns-burden" / "cases" / "extra.yaml").write_text("cases: []\n", encoding="utf-8")
    assert engine_key(None, [root], "indexed", 300) != key
    assert engine_key(None, [root], "indexed", 301) != engine_key(None, [root], "indexed", 300)
    assert engine_key(None, [root], "durable", 300) != engine_key(None, [root], "indexed", 300)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other-key", "not-engine"])
def test_a_corrupt_cache_file_is_ignored_and_replaced(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "engines"
    good = cached_engine(folder=folder)
    (path,) = folder.glob("engine-*.pickle")
    data = path.read_bytes()
    header = data.split(b"\n", 1)[0] + b"\n"
    path.write_bytes({
        "garbage": b"\x00\xff not a pickle at all",
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "other-key": header.replace(header[-9:-1], b"00000000") + data[len(header):],
        "not-engine": header + pickle.dumps({"engine": "no"}),
    }[damage])
    engine = cached_engine(folder=folder)
    assert _results(engine) == _results(good)
    assert path.read_bytes() == data  # rewritten whole (atomically, by rename)
    assert not list(folder.glob(".engine-*.tmp"))


def test_a_cache_folder_others_can_write_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "engines"
    cached_engine(folder=folder)
    (path,) = folder.glob("engine-*.pickle")
    path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n" + b"\x80\x05N.")  # None
    folder.chmod(0o777)
    assert isinstance(cached_engine(folder=folder), Engine)  # built, not unpickled
    folder.chmod(0o700)


def test_an_unwritable_cache_is_no_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    engine = cached_engine(folder=blocker / "engines")
    assert isinstance(engine, Engine)


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for off in ("off", "none", "0", ""):
        monkeypatch.setenv("CDS_CACHE_DIR", off)
        assert cache_dir() is None
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CDS_CACHE_DIR")
    default = cache_dir()
    assert default is not None and "cds" in default.parts


def test_concurrent_writers_leave_one_complete_file(tmp_path: Path) -> None:
    """Two processes building at once: each writes a temporary file and renames it; a reader
    sees a complete file either way."""
    import subprocess
    import sys

    folder = tmp_path / "engines"
    code = ("import sys; from pathlib import Path; from cds.engine.cache import cached_engine; "
            "cached_engine(folder=Path(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder)]) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    files = list(folder.glob("engine-*.pickle"))
    assert len(files) == 1 and not list(folder.glob(".engine-*.tmp"))
    key = files[0].name.removeprefix("engine-").removesuffix(".pickle")
    assert engine_cache._read(files[0], key) is not None


def test_no_version_or_help_loads_the_engine() -> None:
    """`cds --version` and `cds --help` import neither the engine nor the knowledge."""
    import subprocess
    import sys

    code = ("import sys; from cds.cli import app\n"
            "try:\n    app(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('cds.engine', 'cds.knowledge', "
            "'cds.rules', 'cds.io', 'networkx', 'yaml'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "CDS_CACHE_DIR": "off"})
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout


# -- cds panel names every file it wrote ---------------------------------------------------------

def test_panel_prints_every_output_path(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "review"
    r = subprocess.run([sys.executable, "-c", "from cds.cli import app; app()", "panel",
                        str(ROOT / "examples" / "panel"), "--out", str(out), "--pack",
                        "opioid-safety", "--as-of", "2026-11-26", "--workers", "1", "--fhir"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    said = (r.stdout + r.stderr).replace("\n", "")
    listed = json.loads((out / "run.json").read_text())["outputs"]
    assert {"alerts.csv", "worklist.csv", "report.html", "DetectedIssue.ndjson"} <= set(listed)
    for name in listed:
        assert (out / name).is_file(), name
        assert str((out / name).resolve()) in said, name
    written = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert written - {"run.json", "decisions.sqlite3"} <= set(listed), written - set(listed)


def test_check_imports_only_what_it_uses(tmp_path: Path) -> None:
    """`cds check` (engine from the cache) loads no networkx, no store, server, panel or
    authoring code: what a command does not use costs it nothing."""
    import subprocess
    import sys

    code = ("import sys\nfrom cds.cli import app\n"
            f"args = ['check', {str(BUNDLE)!r}, '--as-of', '2026-11-26']\n"
            "try:\n    app(args)\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write(repr(sorted(sys.modules)))")
    env = {**os.environ, "CDS_CACHE_DIR": str(tmp_path / "engines")}
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=env)  # the engine from the cache
    loaded = {m.split(".")[0] if not m.startswith("cds.") else ".".join(m.split(".")[:2])
              for m in ast.literal_eval(r.stderr.strip().splitlines()[-1])}
    unused = {"networkx", "sqlalchemy", "alembic", "fastapi", "uvicorn", "starlette", "pandas",
              "pyarrow", "dask", "distributed", "jinja2", "durable", "cds.authoring",
              "cds.decisions", "cds.panel", "cds.service", "cds.worklist", "cds.synth"}
    assert not loaded & unused, sorted(loaded & unused)


def test_review_import_reads_standard_input(tmp_path: Path) -> None:
    db = str(tmp_path / "decisions.sqlite3")
    csv_text = "patient_id,alert_key,decision\np1,opioid-safety/mme-90@MME90+,\n"
    r = cli("review", "import", "-", "--db", db, input=csv_text)
    assert r.exit_code == 0, r.output
    assert "applied 0 decision(s); 1 row(s) unchanged" in r.stdout
    bad = cli("review", "import", "-", "--db", db, input="name,age\nx,1\n")
    assert bad.exit_code == 2 and "<stdin>" in bad.stderr and "alert_key" in bad.stderr
    partial = cli("review", "import", "-", "--db", db, "--partial", input=csv_text)
    assert partial.exit_code == 2 and "--rejects" in partial.stderr
