"""The Hub endpoints the local server answers, as functions of (handler, segments, query, body)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from tests.hub_server import Response
from tests.hub_store import Blob, Commit, HubError, Repo, card_data, tree_listing

if TYPE_CHECKING:
    from tests.hub_server import HubServer, _Handler


def route(h: _Handler, method: str, seg: list[str], query: str, body: bytes) -> Response:
    """Send a request to its endpoint; 404 for anything this server does not speak."""
    q = {k: v[-1] for k, v in parse_qs(query).items()}
    if seg[:2] == ["api", "whoami-v2"]:
        return whoami(h)
    if seg[:2] == ["api", "agent-harnesses"]:  # the client's agent detection; empty = none
        return Response.json({"standardEnvVars": [], "harnesses": {}})
    if seg[:2] == ["api", "validate-yaml"]:
        return Response.json({"errors": [], "warnings": []})
    if seg[:3] == ["api", "repos", "create"] and method == "POST":
        return create_repo(h, json.loads(body or b"{}"))
    if seg[:3] == ["api", "repos", "delete"] and method == "DELETE":
        return delete_repo(h, json.loads(body or b"{}"))
    if seg[:2] == ["api", "models"] and len(seg) >= 4:
        return model_api(h, method, f"{seg[2]}/{seg[3]}", seg[4:], q, body)
    if len(seg) >= 3 and seg[1].endswith(".git"):
        return lfs_api(h, method, f"{seg[0]}/{seg[1][:-4]}", seg[2:], body)
    if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
        return resolve(h, method, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
    raise HubError(404, f"no such endpoint: {method} {'/'.join(seg)}")


def whoami(h: _Handler) -> Response:
    """The token's user, or 401."""
    user = h.hub.user_for(h.headers.get("Authorization"))
    if user is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    orgs = [{"name": o, "type": "org"} for o in sorted(h.hub.orgs)]
    auth = {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}
    return Response.json(
        {"type": "user", "id": user, "name": user, "fullname": user, "orgs": orgs, "auth": auth}
    )


def readable(h: _Handler, repo_id: str) -> Repo:
    """The repo if the caller may read it: private repos need their owner's token."""
    repo = h.hub.store.get(repo_id)
    user = h.hub.user_for(h.headers.get("Authorization"))
    if repo.private and not can_write(h.hub, user, repo_id):
        raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
    return repo


def can_write(hub: HubServer, user: str | None, repo_id: str) -> bool:
    """Whether `user` owns the repo's namespace (their name or one of `hub.orgs`)."""
    namespace = repo_id.split("/")[0]
    return user is not None and (namespace == user or namespace in hub.orgs)


def writable(h: _Handler, repo_id: str) -> Repo:
    """The repo if the caller may write to it: 401 without a token, 403 outside their namespace."""
    repo = readable(h, repo_id)
    user = h.hub.user_for(h.headers.get("Authorization"))
    if user is None and h.hub.require_write_token:
        raise HubError(401, "You must be authenticated to write to this repo")
    if user is not None and not can_write(h.hub, user, repo_id):
        raise HubError(403, f"You don't have the rights to write to {repo_id}")
    return repo


def create_repo(h: _Handler, payload: dict[str, Any]) -> Response:
    """POST /api/repos/create: 200 with url, or 409 that still carries url."""
    user = h.hub.user_for(h.headers.get("Authorization"))
    if user is None and h.hub.require_write_token:
        raise HubError(401, "You must be authenticated to create a repo")
    repo_id = f"{payload.get('organization') or user or 'anonymous'}/{payload['name']}"
    if user is not None and not can_write(h.hub, user, repo_id):
        raise HubError(
            403, f"You don't have the rights to create a model under {repo_id.split('/')[0]}"
        )
    url = f"{h.hub.url}/{repo_id}"
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    try:
        h.hub.store.create_repo(repo_id, private, user or "anonymous")
    except HubError as err:
        err.extra["url"] = url
        raise
    return Response.json({"url": url, "name": repo_id, "id": repo_id})


def delete_repo(h: _Handler, payload: dict[str, Any]) -> Response:
    """DELETE /api/repos/delete."""
    repo_id = f"{payload.get('organization') or h.hub.user_for(h.headers.get('Authorization'))}/{payload['name']}"
    writable(h, repo_id)
    with h.hub.store.lock:
        h.hub.store.repos.pop(repo_id, None)
    return Response.json({})


def model_api(
    h: _Handler, method: str, repo_id: str, rest: list[str], q: dict[str, str], body: bytes
) -> Response:
    """Everything under /api/models/{namespace}/{name}."""
    action, args = (rest[0], rest[1:]) if rest else ("", [])
    if method == "GET" and action in ("", "revision"):
        repo = readable(h, repo_id)
        return Response.json(model_info(h.hub, repo, repo.resolve(args[0] if args else "main")))
    if method == "GET" and action == "tree":
        commit = readable(h, repo_id).resolve(args[0])
        recursive = q.get("recursive", "false").lower() in ("1", "true")
        return Response.json(tree_listing(commit.files, "/".join(args[1:]), recursive))
    if method == "POST" and action == "paths-info":
        return paths_info(readable(h, repo_id).resolve(args[0]), body)
    if method == "GET" and action == "refs":
        return refs(readable(h, repo_id))
    if method == "GET" and action == "commits":
        return Response.json(
            [c.as_json() for c in readable(h, repo_id).history(args[0] if args else "main")]
        )
    if method == "POST" and action == "preupload":
        return preupload(h, writable(h, repo_id), args[0], json.loads(body))
    if method == "POST" and action == "commit":
        return post_commit(h, writable(h, repo_id), args[0], body)
    if action in ("branch", "tag"):
        return branch_or_tag(h, method, writable(h, repo_id), action, args[0], body)
    raise HubError(404, f"no such endpoint: {method} /api/models/{repo_id}/{'/'.join(rest)}")


def model_info(hub: HubServer, repo: Repo, commit: Commit) -> dict[str, Any]:
    """The model-info document: id, sha, siblings, cardData, tags, dates, visibility."""
    readme = commit.files.get("README.md")
    card = card_data(readme.path.read_bytes()) if readme else None
    card_ = card or {}
    tags = list(card_.get("tags") or [])
    library = card_.get("library_name")
    if library and library not in tags:
        tags.insert(0, library)
    siblings = [
        {
            "rfilename": path,
            "size": b.size,
            "blobId": b.tree_oid,
            **({"lfs": _sibling_lfs(b)} if b.lfs else {}),
        }
        for path, b in sorted(commit.files.items())
    ]
    return {
        "_id": repo.repo_id,
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.oid,
        "lastModified": commit.date,
        "createdAt": repo.created_at,
        "private": repo.private,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags,
        "library_name": library,
        "pipeline_tag": card_.get("pipeline_tag"),
        "cardData": card,
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(b.size for b in commit.files.values()),
    }


def _sibling_lfs(blob: Blob) -> dict[str, Any]:
    lfs = blob.tree_entry("")["lfs"]
    return {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}


def paths_info(commit: Commit, body: bytes) -> Response:
    """POST paths-info: entries for the named paths that exist."""
    form = parse_qs(body.decode())
    out = []
    for path in form.get("paths", []):
        if path in commit.files:
            out.append(commit.files[path].tree_entry(path))
        elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
            out.append(
                {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path}
            )
    return Response.json(out)


def refs(repo: Repo) -> Response:
    """GET refs: branches and tags with their target commits."""

    def items(table: dict[str, str], kind: str) -> list[dict[str, str]]:
        return [
            {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid}
            for n, oid in sorted(table.items())
        ]

    data = {
        "branches": items(repo.branches, "heads"),
        "tags": items(repo.tags, "tags"),
        "converts": [],
    }
    return Response.json({**data, "pullRequests": []})


def branch_or_tag(
    h: _Handler, method: str, repo: Repo, kind: str, name: str, body: bytes
) -> Response:
    """POST/DELETE branch/{name} and tag/{revision} (body names the tag)."""
    table = repo.branches if kind == "branch" else repo.tags
    payload = json.loads(body or b"{}")
    if method == "DELETE":
        if table.pop(name, None) is None:
            raise HubError(404, f"{kind} {name} not found", "RevisionNotFound")
        return Response.json({})
    new = name if kind == "branch" else payload["tag"]
    if new in table:
        raise HubError(409, f"{kind} {new} already exists")
    start = payload.get("startingPoint", "main") if kind == "branch" else name
    table[new] = repo.resolve(start).oid
    return Response.json({})


def preupload(h: _Handler, repo: Repo, revision: str, payload: dict[str, Any]) -> Response:
    """POST preupload: per file its upload mode and the oid of the file already there."""
    head = repo.commits[repo.branches[revision]] if revision in repo.branches else None
    files = []
    for item in payload["files"]:
        mode = h.hub.upload_mode(item["path"], item["size"])
        existing = head.files.get(item["path"]) if head else None
        oid = (existing.sha256 if mode == "lfs" else existing.git_oid) if existing else None
        files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    return Response.json({"files": files, "commitOid": head.oid if head else None})


def post_commit(h: _Handler, repo: Repo, revision: str, body: bytes) -> Response:
    """POST commit: apply NDJSON header/file/lfsFile/deletedFile/deletedFolder lines to a branch."""
    if revision not in repo.branches:
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    header: dict[str, Any] = next((line["value"] for line in lines if line["key"] == "header"), {})
    head = repo.resolve(revision)
    if header.get("parentCommit") not in (None, head.oid):
        raise HubError(
            412, f"A commit has happened since. Please refresh and try again. (head is {head.oid})"
        )
    files = dict(head.files)
    for line in lines:
        apply_line(h, files, line["key"], line["value"])
    user = h.hub.user_for(h.headers.get("Authorization")) or "anonymous"
    new = h.hub.store.add_commit(
        repo, revision, files, header.get("summary", ""), header.get("description", ""), user
    )
    url = f"{h.hub.url}/{repo.repo_id}/commit/{new.oid}"
    return Response.json(
        {"success": True, "commitOid": new.oid, "commitUrl": url, "hookOutput": ""}
    )


def apply_line(h: _Handler, files: dict[str, Blob], key: str, value: dict[str, Any]) -> None:
    """Apply one NDJSON operation to a file map."""
    store = h.hub.store
    if key == "file":
        files[value["path"]] = store.put_blob(base64.b64decode(value["content"]), lfs=False)
    elif key == "lfsFile":
        files[value["path"]] = store.lfs_blob(value["oid"], value["size"])
    elif key == "deletedFile":
        if files.pop(value["path"], None) is None:
            raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
    elif key == "deletedFolder":
        prefix = value["path"].rstrip("/") + "/"
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]
    elif key != "header":
        raise HubError(400, f"unsupported commit operation {key}")


def lfs_api(h: _Handler, method: str, repo_id: str, rest: list[str], body: bytes) -> Response:
    """The git-lfs batch endpoint and the upload (PUT) and verify actions it hands out."""
    if rest == ["info", "lfs", "objects", "batch"] and method == "POST":
        writable(h, repo_id)
        payload = json.loads(body)
        base = f"{h.hub.url}/{repo_id}.git"
        objects = []
        for obj in payload["objects"]:
            out: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not h.hub.store.has_blob(obj["oid"]):
                upload = {"href": f"{base}/lfs/objects/{obj['oid']}/{obj['size']}"}
                verify = {"href": f"{base}/info/lfs/objects/verify", "header": {}}
                out["actions"] = {"upload": upload, "verify": verify}
            objects.append(out)
        return Response.json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
    if len(rest) == 4 and rest[:2] == ["lfs", "objects"] and method == "PUT":  # like S3: no auth
        if hashlib.sha256(body).hexdigest() != rest[2] or len(body) != int(rest[3]):
            raise HubError(400, "uploaded bytes do not match the announced oid/size")
        h.hub.store.put_blob(body, lfs=True)
        return Response(200)
    if rest == ["info", "lfs", "objects", "verify"] and method == "POST":
        writable(h, repo_id)
        obj = json.loads(body)
        if not h.hub.store.has_blob(obj["oid"]):
            raise HubError(404, f"LFS object {obj['oid']} not found")
        return Response.json({})
    raise HubError(404, f"no such LFS endpoint: {method} {'/'.join(rest)}")


def resolve(h: _Handler, method: str, repo_id: str, revision: str, path: str) -> Response:
    """HEAD/GET resolve: the file's bytes with commit, ETag, size headers and Range support."""
    repo = readable(h, repo_id)
    commit_ = repo.resolve(revision)
    blob = commit_.files.get(path)
    if blob is None:
        raise HubError(404, "Entry not found", "EntryNotFound")
    headers = {"X-Repo-Commit": commit_.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
    headers["Content-Type"] = "application/octet-stream"
    if blob.lfs:
        headers |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)}
    if method == "HEAD":
        return Response(200, b"", headers | {"Content-Length": str(blob.size)})
    data = blob.path.read_bytes()
    range_ = h.headers.get("Range")
    if range_ and range_.startswith("bytes="):
        start_s, _, end_s = range_[6:].split(",")[0].partition("-")
        start = int(start_s or 0)
        end = min(int(end_s), blob.size - 1) if end_s else blob.size - 1
        if start >= blob.size:
            return Response(416, b"", headers | {"Content-Range": f"bytes */{blob.size}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        return Response(206, data[start : end + 1], headers)
    return Response(200, data, headers)
