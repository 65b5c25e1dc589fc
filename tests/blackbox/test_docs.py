"""`/docs` in a real browser: Debian's headless Chromium loads Swagger UI from
the binary (no network beyond the server), follows a deep link that expands one
operation, and the dumped DOM must show the operation list and that operation
open with its example. A screenshot is kept in
`target/blackbox-artifacts/docs.png` (`BLACKBOX_ARTIFACTS` moves the directory).

Without a `chromium` (or `chromium-browser`) on PATH the test skips with the
reason, except under `CI=true`, where it fails: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from conftest import BASE_URL

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("BLACKBOX_ARTIFACTS") or ROOT / "target" / "blackbox-artifacts")
# The deep link: tag and operationId, as Swagger UI's deepLinking builds it.
TAG, OPERATION = "connections", "create_connection"
# Swagger UI renders asynchronously; Chromium's virtual time lets it finish
# without a wall-clock sleep (it only advances while the page is idle).
BUDGET_MS = 15000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    f"--virtual-time-budget={BUDGET_MS}",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium not installed (apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: under CI=true the /docs browser test must run")
    pytest.skip(reason)


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="patchbay-chromium-") as profile:
        return subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


class Blocks(HTMLParser):
    """The ids and classes of Swagger UI's operation blocks (`opblock`)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = a.get("class") or ""
        if "opblock" in classes.split() and (a.get("id") or "").startswith("operations-"):
            self.blocks[a["id"] or ""] = classes


def test_docs_render_offline_and_deep_link_expands_one_operation():
    binary = chromium()
    doc = requests.get(f"{BASE_URL}/openapi.json", timeout=10).json()
    expected = {
        f"operations-{op['tags'][0]}-{op['operationId']}"
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    url = f"{BASE_URL}/docs/#/{TAG}/{OPERATION}"

    dumped = run_chromium(binary, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    parser = Blocks()
    parser.feed(dom)

    # The operation list: every documented operation has its block.
    missing = sorted(expected - parser.blocks.keys())
    assert not missing, f"operations missing from /docs: {missing[:10]} ({len(parser.blocks)} rendered)"
    # The deep link opened exactly that operation.
    target = f"operations-{TAG}-{OPERATION}"
    opened = sorted(i for i, c in parser.blocks.items() if "is-open" in c.split())
    assert opened == [target], opened
    # Its description and its request example are shown (the text as a reader
    # sees it: markup gone, whitespace collapsed).
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    assert "after proving it with a test call" in text, "the description is not shown"
    assert "sk_test_51HabcDEF0123456789xyzXYZ4242" in text, "the request example is not shown"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / "docs.png"
    png.unlink(missing_ok=True)
    shot = run_chromium(binary, f"--screenshot={png}", "--window-size=1280,2400", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    # A blank page compresses to a few kilobytes; rendered text does not.
    assert len(data) > 50_000, f"the screenshot is {len(data)} bytes: blank?"
    print(f"screenshot: {png}")


def test_every_example_in_the_document_matches_its_schema():
    """The examples `/docs` shows are what the schemas allow (a request example
    that the server would refuse, or a response example it could never send,
    misleads the reader)."""
    import jsonschema_rs

    doc = requests.get(f"{BASE_URL}/openapi.json", timeout=10).json()
    checked, wrong = 0, []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            blocks = [("request", (op.get("requestBody") or {}).get("content", {}))]
            blocks += [(status, r.get("content", {})) for status, r in op["responses"].items()]
            for where, content in blocks:
                media = content.get("application/json")
                if not media or "example" not in media:
                    continue
                checked += 1
                validator = jsonschema_rs.validator_for({"components": doc["components"], **media["schema"]})
                errors = [str(e).splitlines()[0] for e in validator.iter_errors(media["example"])]
                if errors:
                    wrong.append(f"{method.upper()} {path} {where}: {errors[:3]}")
    assert checked >= 60, checked
    assert not wrong, "\n".join(wrong)
