"""The fuzz corpus (tests/fuzz_corpus.py) through `inspect`, `add`, `scan` and `verify`.

Each command finishes within a stated time over the whole corpus, prints no traceback, registers
none of the files the safetensors library refuses, and leaves `pragma integrity_check` ok. The
test prints the figures: files tried, tracebacks, hangs, invalid rows.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from lorahub.cli import main
from lorahub.registry import Registry
from tests.fuzz_corpus import Case, write_corpus
from tests.test_registry import write_lora

LIMITS = {"inspect": 60.0, "add": 60.0, "scan": 60.0, "verify": 30.0}  # seconds, whole corpus
HANG = 300  # a command that has not returned by then is a hang: dump the stacks and fail


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case], set[str]]:
    folder = tmp_path_factory.mktemp("fuzz") / "Lora"
    cases = write_corpus(folder)
    for i in range(2):  # controls: real adapters that must register
        path = write_lora(folder / f"good-{i}.safetensors", i)
        cases.append(Case(f"good-{i}", path))
    return folder, cases, {str(c.path) for c in cases if _valid(c)}


def _valid(case: Case) -> bool:
    """The safetensors library's verdict: does it open the file?"""
    if case.special or not case.path.is_file():
        return False
    try:
        with safe_open(str(case.path), "np"):
            return True
    except Exception:
        return False


class Tally:
    def __init__(self) -> None:
        self.tried = self.tracebacks = 0
        self.seconds = 0.0

    def run(self, *args: object) -> tuple[int, str]:
        """Run one CLI command in-process; an exception that escapes it is a traceback."""
        faulthandler.dump_traceback_later(HANG, exit=True)
        t0 = time.perf_counter()
        try:
            result = CliRunner().invoke(main, [str(a) for a in args])
        finally:
            faulthandler.cancel_dump_traceback_later()
            self.seconds += time.perf_counter() - t0
        self.tried += 1
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if crashed or "Traceback" in result.output:
            self.tracebacks += 1
            print(f"TRACEBACK for {args}: {result.exception!r}\n{result.output[-800:]}")
        return result.exit_code, result.output


def _rows(home: Path) -> list[str]:
    with sqlite3.connect(home / "registry.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in db.execute("SELECT path FROM adapters")]


def _report(what: str, tally: Tally, invalid: int) -> None:
    print(f"fuzz {what}: {tally.tried} runs in {tally.seconds:.1f} s, tracebacks {tally.tracebacks}, "
          f"hangs 0, invalid rows {invalid}")  # fmt: skip
    assert tally.tracebacks == 0 and invalid == 0
    assert tally.seconds < LIMITS[what], f"{what} took {tally.seconds:.1f} s"


def test_inspect_and_add_each_file(corpus, lorahub_home: Path) -> None:
    folder, cases, valid = corpus
    inspect, add = Tally(), Tally()
    for case in cases:
        code, out = inspect.run("inspect", case.path, "--json")
        if code == 0:
            assert str(case.path) in valid, (
                f"{case.name}: inspect accepted a file safetensors refuses"
            )
        else:
            assert out.strip().count("\n") < 3, f"{case.name}: more than a line: {out}"
        code, out = add.run("add", case.path, "--name", f"f-{case.name}", "--json")
        if code == 0:
            assert str(case.path) in valid, case.name
            assert json.loads(out)[0]["path"] == str(case.path.resolve())
    rows = _rows(lorahub_home)
    assert {str(Path(p)) for p in rows} >= {
        str(c.path.resolve()) for c in cases if "good" in c.name
    }
    _report("inspect", inspect, 0)
    _report("add", add, sum(p not in valid for p in rows))


def test_scan_reports_each_file_and_goes_on(corpus, lorahub_home: Path) -> None:
    folder, cases, valid = corpus
    scan = Tally()
    code, out = scan.run("scan", folder, "--no-hash", "--json", "--workers", "0")
    assert code == 0, out
    report = json.loads(out)
    reported = {i["path"] for k in ("new", "skipped", "errors") for i in report[k]}
    files = {str(c.path) for c in cases if c.name not in ("folder",)}  # a folder is walked into
    assert files <= reported, sorted(files - reported)[:5]
    for kind in ("skipped", "errors"):
        for item in report[kind]:
            assert item["detail"] and "\n" not in item["detail"], item
    rows = _rows(lorahub_home)
    assert {c.name for c in cases if str(c.path) in rows} >= {"good-0", "good-1"}
    _report("scan", scan, sum(p not in valid for p in rows))
    # the registered files turn hostile under verify: a FIFO, a folder, gone
    good = [c.path for c in cases if c.name.startswith("good")]
    good[0].unlink()
    os.mkfifo(good[0])
    verify = Tally()
    code, out = verify.run("verify", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert [i["path"] for i in result["errors"]] == [str(good[0])]
    assert "not a regular file" in result["errors"][0]["detail"]
    _report("verify", verify, 0)


def test_unreadable_folder_is_reported(tmp_path: Path, lorahub_home: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    locked = tmp_path / "lib" / "locked"
    write_lora(locked / "x.safetensors", 1)
    write_lora(tmp_path / "lib" / "y.safetensors", 2)
    locked.chmod(0)
    try:
        with Registry() as reg:
            report = reg.scan(tmp_path / "lib")
        assert [i.path for i in report.errors] == [str(locked)] and len(report.new) == 1
    finally:
        locked.chmod(0o755)
