"""The list pages a backfill reads, fetched plainly (for the baseline and for the in-memory part).

A backfill reads the newest runs and the active ones, GET /workflows, every workflow's newest
500 runs, and, for a workflow whose page is full, its runs by status. These functions make
the same requests one after the other, with no pacing, and keep the bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pipelines.sixtyfour.settings import NARROWING_STATUSES, PAGE_LIMIT, RUNS_PATH, WORKFLOWS_PATH

Parse = Callable[[bytes], Any]


@dataclass(frozen=True)
class Page:
    """One answered GET /workflows/runs (status and workflow_id as sent; None: not sent)."""

    status: str | None
    workflow_id: str | None
    body: bytes


def client(base_url: str, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"x-api-key": api_key}, timeout=60)


def get_runs(http: httpx.Client, status: str | None, workflow_id: str | None) -> bytes:
    params: dict[str, str | int] = {"limit": PAGE_LIMIT}
    if status:
        params["status"] = status
    if workflow_id:
        params["workflow_id"] = workflow_id
    response = http.get(RUNS_PATH, params=params)
    response.raise_for_status()
    return response.content


def get_workflows(http: httpx.Client) -> bytes:
    response = http.get(WORKFLOWS_PATH)
    response.raise_for_status()
    return response.content


def partition_pages(
    http: httpx.Client, workflows: list[dict[str, Any]], parse: Parse
) -> Iterator[tuple[Page, Any]]:
    """Every workflow's page, then its pages by status where it was full, each parsed."""
    for workflow in workflows:
        body = get_runs(http, None, workflow["id"])
        runs = parse(body)
        yield Page(None, workflow["id"], body), runs
        if len(runs) >= PAGE_LIMIT:
            for status in NARROWING_STATUSES:
                narrow = get_runs(http, status, workflow["id"])
                yield Page(status, workflow["id"], narrow), parse(narrow)


def backfill_pages(http: httpx.Client, parse: Parse) -> tuple[list[Page], bytes]:
    """The pages a backfill reads (newest, active, partitions) and the GET /workflows body."""
    pages = [Page(None, None, get_runs(http, None, None))]
    pages.append(Page("active", None, get_runs(http, "active", None)))
    workflows_body = get_workflows(http)
    pages.extend(page for page, _ in partition_pages(http, parse(workflows_body), parse))
    return pages, workflows_body


def save(pages: list[Page], workflows_body: bytes, folder: Path) -> None:
    """Write the bodies as files and a manifest, for a child process to read back."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for number, page in enumerate(pages):
        name = f"page-{number:05d}.json"
        (folder / name).write_bytes(page.body)
        manifest.append({"file": name, "status": page.status, "workflow_id": page.workflow_id})
    (folder / "workflows.json").write_bytes(workflows_body)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def load(folder: Path) -> tuple[list[Page], bytes]:
    """The pages and the GET /workflows body `save` wrote, read into memory."""
    manifest = json.loads((folder / "manifest.json").read_text())
    pages = [
        Page(entry["status"], entry["workflow_id"], (folder / entry["file"]).read_bytes())
        for entry in manifest
    ]
    return pages, (folder / "workflows.json").read_bytes()
