"""The database itself: migrations on an old file, concurrent writers, the example file, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlite_utils import Database

from lorahub.registry import Registry, migrations
from lorahub.registry.example import contents_of, schema_of, write_example
from tests.test_registry import write_lora

REPO = Path(__file__).resolve().parent.parent
REGENERATE = "PYTHONHASHSEED=0 OMP_NUM_THREADS=1 lorahub db example"


def test_migrations_upgrade_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="0002_lineage")
    db.execute(
        "INSERT INTO adapters (name, path, size, mtime, format, network_type, base_family, trigger_words,"
        " description, created_at, updated_at) VALUES ('veteran', '/x/veteran.safetensors', 10, 1.5, 'kohya',"
        " 'lora', 'sd1', '[\"vtrn\"]', 'from the first release', '2024-01-01', '2024-01-01')"
    )
    db.execute("INSERT INTO adapter_tags (adapter_id, tag) VALUES (1, 'old')")
    db.conn.commit()
    db.conn.close()
    reg = Registry(path)
    assert all(applied for _, applied in reg.status()) and len(reg.status()) >= 6
    rec = reg.get_adapter("veteran")
    assert rec.tags == ("old",) and rec.preview is None and rec.trigger_words == ("vtrn",)
    assert [r.name for r in reg.list_adapters(search="vtrn first")] == ["veteran"]  # FTS backfilled
    assert [r.name for r in reg.list_adapters(search="old")] == ["veteran"]
    status = reg.status()
    reg.close()
    assert Registry(path).status() == status  # reopening applies nothing twice


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lorahub.registry import Registry
    reg = Registry(Path(sys.argv[1]))
    prefix = sys.argv[2]
    for f in sorted(Path(sys.argv[3]).iterdir()):
        reg.add_adapter(f, name=f"{prefix}-{f.stem}", tags=[prefix, "shared"], hash=False)
    """
)


def test_concurrent_writers(tmp_path: Path) -> None:
    db_path = tmp_path / "shared.db"  # both writers also race to create and migrate it
    for prefix in ("p", "q"):
        for i in range(200):
            write_lora(tmp_path / prefix / f"a{i:03d}.safetensors", i, rank=2, modules=1)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), prefix, str(tmp_path / prefix)],
            stderr=subprocess.PIPE,
        )
        for prefix in ("p", "q")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    reg = Registry(db_path)
    assert reg.count_adapters() == 400
    assert (
        len(reg.list_adapters(tags=["p"])) == 200
        and len(reg.list_adapters(tags=["q", "shared"])) == 200
    )
    assert reg.db.execute("SELECT count(*) FROM adapters_fts").fetchone()[0] == 400


def test_example_database_matches_migrations(tmp_path: Path) -> None:
    fresh = write_example(tmp_path / "registry.db.example", example_adapters=None)
    committed = REPO / "registry.db.example"
    assert committed.is_file(), "run `lorahub db example` and commit registry.db.example"
    assert schema_of(fresh) == schema_of(committed)
    assert not Path(str(fresh) + "-wal").exists()


def test_example_database_is_regenerated_exactly(tiny_sd1: Path, tmp_path: Path) -> None:
    """`lorahub db example` rebuilds the committed file row for row (fixed times, sorted headers),
    every table holds an example row, and no path is a machine's absolute or temporary path."""
    committed = contents_of(REPO / "registry.db.example")
    assert {t: bool(rows) for t, rows in committed.items()} == dict.fromkeys(committed, True)
    # its two adapters are trained: float sums depend on the thread count and (through the order
    # peft builds layers in) on the hash seed, so the command runs as REGENERATE says, in a
    # process of its own with a cache of its own (the session's examples were trained otherwise)
    import os
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_sd1, cache / "models" / tiny_sd1.name)
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "LORAHUB_CACHE": str(cache), "LORAHUB_HOME": str(tmp_path / "home")}  # fmt: skip
    again = tmp_path / "again.db"
    done = subprocess.run(
        [sys.executable, "-m", "lorahub", "db", "example", "-o", str(again)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = contents_of(again)
    assert fresh == committed, f"run `{REGENERATE}` and commit registry.db.example"
    copy = tmp_path / "copy.db"  # opening a registry switches it to WAL: never the committed file
    copy.write_bytes((REPO / "registry.db.example").read_bytes())
    reg = Registry(copy)
    paths = [r.path for r in reg.list_adapters()] + [m.path for m in reg.list_models()]
    assert paths and all(not Path(p).is_absolute() and "tmp" not in p for p in paths), paths
    assert [m.name for m in reg.list_mixes()] == ["example-mix"]
    assert {e.relation for e in reg.lineage("example-style")} == {"trained-from"}


def test_listing_commands_do_not_import_torch(tmp_path: Path) -> None:
    write_lora(tmp_path / "light.safetensors")
    script = textwrap.dedent(
        f"""
        import json, sys
        from click.testing import CliRunner
        import lorahub.registry
        from lorahub.cli import main
        r = CliRunner()
        out = [r.invoke(main, ["add", {str(tmp_path / "light.safetensors")!r}, "--no-hash"]).exit_code]
        for args in (["list"], ["list", "--json"], ["show", "light"], ["tag", "light", "x"], ["untag", "light", "x"], ["db", "status"]):
            out.append(r.invoke(main, args).exit_code)
        heavy = [m for m in ("torch", "diffusers", "peft", "transformers", "safetensors.torch") if m in sys.modules]
        print(json.dumps({{"codes": out, "heavy": heavy}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0] * 7, "heavy": []}


def test_db_status_shows_pending_migrations_and_writes_nothing(lorahub_home: Path) -> None:
    from click.testing import CliRunner

    from lorahub import paths
    from lorahub.cli import main
    from lorahub.registry.db import connect

    def status() -> list[dict[str, object]]:
        result = CliRunner().invoke(main, ["db", "status", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["migrations"]

    path = paths.registry_path()
    with Registry(lorahub_home / "full.db") as full:
        assert all(applied for _, applied in full.status())
        every = [name for name, _ in full.status()]
    fresh = status()  # no registry yet: every migration pending, and no file made
    assert fresh == [{"name": n, "applied": False} for n in every] and not path.exists()
    db = connect(path)  # an older lorahub's file: WAL, the first three migrations
    migrations.apply(db, stop_before="0004_mixes")
    db.conn.close()
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    old = status()
    assert old == [{"name": n, "applied": i < 3} for i, n in enumerate(every)]
    text = CliRunner().invoke(main, ["db", "status"], catch_exceptions=False).output
    assert "0004_mixes" in text and "pending" in text and f"{len(every) - 3} pending" in text
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before  # read, never written
    Registry(path).close()  # any other command migrates
    assert status() == [{"name": n, "applied": True} for n in every]
