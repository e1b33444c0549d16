"""Named mixes: validation (members exist, no duplicates, one base family) and resolution."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from lorahub.errors import AlreadyExistsError, IncompatibleError, InvalidInputError, NotFoundError
from lorahub.families import UNKNOWN_FAMILIES
from lorahub.registry.db import dumps, loads, now, transaction
from lorahub.registry.queries import find_ids, get_record, resolve_id
from lorahub.registry.records import AdapterRecord, MixRecord
from lorahub.types import AdapterSpec, MixMember, check_name


def resolve_records(db: sqlite_utils.Database, members: list[MixMember]) -> list[AdapterRecord]:
    """The adapter of each member; every missing reference is reported in one error."""
    missing = [m.ref for m in members if not find_ids(db, m.ref)]
    if missing:
        raise NotFoundError(f"no adapter matches {', '.join(repr(r) for r in missing)}")
    return [get_record(db, resolve_id(db, m.ref), with_metadata=False) for m in members]


def check_members(members: list[MixMember], records: list[AdapterRecord]) -> str | None:
    """Refuse empty mixes, duplicate members and mixed base families; returns the family."""
    if not members:
        raise InvalidInputError("a mix needs at least one member")
    seen: dict[int, str] = {}
    for m, r in zip(members, records, strict=True):
        if r.id in seen:
            raise InvalidInputError(
                f"{m.ref!r} and {seen[r.id]!r} are the same adapter ({r.ref}); list it once"
            )
        seen[r.id] = m.ref
    known = [r for r in records if r.base_family not in UNKNOWN_FAMILIES]
    for r in known[1:]:
        if r.base_family != known[0].base_family:
            raise IncompatibleError(
                f"{known[0].ref} is for {known[0].base_family} but {r.ref} is for {r.base_family}; a mix needs one base family"
            )
    return known[0].base_family if known else None


def save_mix(
    db: sqlite_utils.Database,
    name: str,
    members: list[MixMember],
    *,
    description: str | None = None,
    force: bool = False,
    defaults: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> MixRecord:
    """Validate and store a mix in one transaction (replacing it with `force`); `details` say
    how it was made (a search's record)."""
    check_name(name, "mix name")
    with transaction(db):
        if db.execute("SELECT 1 FROM adapters WHERE name = ?", [name]).fetchone():
            raise AlreadyExistsError(
                f"{name!r} is already the name of an adapter; choose another mix name"
            )
        records = resolve_records(db, members)
        family = check_members(members, records)
        old = db.execute("SELECT id, created_at FROM mixes WHERE name = ?", [name]).fetchone()
        if old and not force:
            raise AlreadyExistsError(f"mix {name!r} exists (use --force to replace it)")
        stamp = now()
        if old:
            db.execute("DELETE FROM mix_members WHERE mix_id = ?", [old[0]])
            db.execute(
                "UPDATE mixes SET description = ?, base_family = ?, defaults = ?, details = ?,"
                " updated_at = ? WHERE id = ?",
                [description, family, dumps(defaults or {}), dumps(details or {}), stamp, old[0]],
            )
            mix_id = old[0]
        else:
            cur = db.execute(
                "INSERT INTO mixes (name, description, base_family, defaults, details, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    description,
                    family,
                    dumps(defaults or {}),
                    dumps(details or {}),
                    stamp,
                    stamp,
                ],
            )
            mix_id = cur.lastrowid
        for pos, (m, r) in enumerate(zip(members, records, strict=True)):
            db.execute(
                "INSERT INTO mix_members (mix_id, position, ref, adapter_id, weight, te_weight, block_weights)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [mix_id, pos, m.ref, r.id, m.weight, m.te_weight, dumps(m.block_weights)],
            )
    return load_mix(db, name)


def load_mix(db: sqlite_utils.Database, name: str) -> MixRecord:
    """A stored mix by name."""
    rows = list(db.query("SELECT * FROM mixes WHERE name = ?", [name]))
    if not rows:
        raise NotFoundError(f"no mix named {name!r}")
    return _mix(db, rows[0])


def _mix(db: sqlite_utils.Database, row: dict[str, Any]) -> MixRecord:
    members = list(
        db.query(
            "SELECT mm.*, a.name || CASE a.version WHEN '' THEN '' ELSE '@' || a.version END AS adapter_ref"
            " FROM mix_members mm LEFT JOIN adapters a ON a.id = mm.adapter_id WHERE mm.mix_id = ? ORDER BY position",
            [row["id"]],
        )
    )
    return MixRecord(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        base_family=row["base_family"],
        members=tuple(
            MixMember(m["ref"], m["weight"], m["te_weight"], loads(m["block_weights"]))
            for m in members
        ),
        member_names=tuple(m["adapter_ref"] for m in members),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        defaults=loads(row.get("defaults")) or {},
        details=loads(row.get("details")) or {},
    )


def all_mixes(db: sqlite_utils.Database) -> list[MixRecord]:
    """Every mix, by name."""
    return [_mix(db, r) for r in db.query("SELECT * FROM mixes ORDER BY name")]


def delete_mix(db: sqlite_utils.Database, name: str) -> None:
    """Remove a mix (its members go with it; the adapters stay)."""
    with transaction(db):
        cur = db.execute("DELETE FROM mixes WHERE name = ?", [name])
    if not cur.rowcount:
        raise NotFoundError(f"no mix named {name!r}")


def mix_member_records(db: sqlite_utils.Database, mix: MixRecord) -> list[AdapterRecord]:
    """The adapters a stored mix pins (by id, so a newer version of a name does not sneak in)."""
    ids = [
        r[0]
        for r in db.execute(
            "SELECT adapter_id FROM mix_members WHERE mix_id = ? ORDER BY position", [mix.id]
        )
    ]
    return [get_record(db, i, with_metadata=False) for i in ids]


def to_spec(member: MixMember, record: AdapterRecord) -> AdapterSpec:
    """What the engine and ops receive for one weighted adapter."""
    return AdapterSpec(
        name=record.ref,
        path=record.path,
        key=record.key,
        weight=member.weight,
        te_weight=member.te_weight,
        block_weights=member.block_weights,
        hash=record.autov3,
        base_family=record.base_family,
        network_type=record.network_type,
    )


def expand_mixes(db: sqlite_utils.Database, members: list[MixMember]) -> list[MixMember]:
    """Replace a member naming a stored mix (and no adapter) by the mix's members, weights multiplied."""
    out: list[MixMember] = []
    for m in members:
        row = (
            None
            if find_ids(db, m.ref)
            else db.execute("SELECT name FROM mixes WHERE name = ?", [m.ref]).fetchone()
        )
        if row is None:
            out.append(m)
            continue
        mix = load_mix(db, row[0])
        for inner, adapter in zip(mix.members, mix_member_records(db, mix), strict=True):
            te = (
                None
                if m.te_weight is None and inner.te_weight is None
                else m.text_weight * inner.text_weight
            )
            out.append(MixMember(adapter.ref, m.weight * inner.weight, te, inner.block_weights))
    return out


def specs(db: sqlite_utils.Database, members: list[MixMember]) -> list[AdapterSpec]:
    """Resolve weighted references (adapters, or stored mixes, expanded) to AdapterSpecs, mix rules applied."""
    members = expand_mixes(db, members)
    records = resolve_records(db, members)
    check_members(members, records)
    return [to_spec(m, r) for m, r in zip(members, records, strict=True)]
