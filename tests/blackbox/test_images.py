"""The container files: `docker-compose.yml` parses, names only files that exist
(or that `scripts/compose-secrets` writes), and runs Patchbay on PostgreSQL with
every secret from a `*_FILE`; the Dockerfile builds with the README's command,
on Debian, into a slim non-root image with a HEALTHCHECK.

No Docker engine runs here, so the compose environment is exercised with the
binary itself: `patchbay serve` gets the patchbay service's environment, with
`/run/secrets/<name>` mapped to files `scripts/compose-secrets` wrote and the
database URL pointed at a scratch database on the test PostgreSQL
(TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test). Without
PostgreSQL or `psql` that part skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SECRET_VARS = {
    "PATCHBAY_DATABASE_URL_FILE",
    "PATCHBAY_MASTER_KEYS_FILE",
    "PATCHBAY_ADMIN_TOKEN_FILE",
    "PATCHBAY_SESSION_SIGNING_KEY_FILE",
    "PATCHBAY_REDIS_URL_FILE",
}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def generated_secrets(tmp_path: Path) -> Path:
    out = tmp_path / "secrets"
    subprocess.run([str(ROOT / "scripts" / "compose-secrets"), str(out)], check=True, capture_output=True)
    return out


def test_compose_parses_and_names_only_files_that_exist(tmp_path):
    doc = compose()
    assert set(doc["services"]) >= {"patchbay", "postgres", "redis"}, doc["services"].keys()
    made = generated_secrets(tmp_path)
    named: list[tuple[str, Path]] = []
    for name, secret in (doc.get("secrets") or {}).items():
        rel = Path(secret["file"])
        assert rel.parts[0] == "secrets", f"secret {name} lives outside ./secrets: {rel}"
        # ./secrets is git-ignored: scripts/compose-secrets writes each file.
        assert (made / rel.relative_to("secrets")).is_file(), f"scripts/compose-secrets does not write {rel}"
    for svc_name, svc in doc["services"].items():
        build = svc.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            named.append((f"{svc_name} build", ROOT / context / dockerfile))
        for env_file in [svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file") or []:
            named.append((f"{svc_name} env_file", ROOT / (env_file if isinstance(env_file, str) else env_file["path"])))
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                named.append((f"{svc_name} volume", ROOT / source))
        for secret in svc.get("secrets") or []:
            ref = secret if isinstance(secret, str) else secret["source"]
            assert ref in (doc.get("secrets") or {}), f"{svc_name} uses undeclared secret {ref}"
    missing = [f"{what}: {path}" for what, path in named if not path.exists()]
    assert not missing, missing
    assert any(what == "patchbay build" for what, _ in named), "the patchbay service is not built from the repository"


def test_compose_runs_patchbay_on_postgres_with_secrets_from_files():
    doc = compose()
    svc = doc["services"]["patchbay"]
    env = env_of(svc)
    assert SECRET_VARS <= env.keys(), f"missing: {sorted(SECRET_VARS - env.keys())}"
    # No secret in the compose file itself.
    for plain in (
        "PATCHBAY_DATABASE_URL",
        "PATCHBAY_MASTER_KEYS",
        "PATCHBAY_ADMIN_TOKEN",
        "PATCHBAY_SESSION_SIGNING_KEY",
        "PATCHBAY_REDIS_URL",
    ):
        assert plain not in env, f"{plain} is set in docker-compose.yml: use {plain}_FILE"
    mounted = {s if isinstance(s, str) else s["source"] for s in svc.get("secrets") or []}
    for var in SECRET_VARS:
        path = env[var]
        assert path.startswith("/run/secrets/") and path.removeprefix("/run/secrets/") in mounted, (var, path)
    pg = doc["services"]["postgres"]
    assert "POSTGRES_PASSWORD" not in env_of(pg), "the PostgreSQL password belongs in a secret file"
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    # Redis asks for a password; it lives only in secret files, and the
    # service keeps nothing on disk (it carries invalidations and rate windows).
    redis = doc["services"]["redis"]
    command = redis["command"]
    assert command[:2] == ["redis-server", "/run/secrets/redis_conf"], command
    assert {"redis_conf", "redis_password"} <= {s if isinstance(s, str) else s["source"] for s in redis["secrets"]}
    assert "--save" in command and "--appendonly" in command, command


def test_dockerfile_debian_builder_slim_non_root_runtime_with_healthcheck_and_readme_build():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2, stages
    assert re.search(r"(bookworm|trixie|debian)", stages[0]), f"builder is not Debian: {stages[0]}"
    assert re.fullmatch(r"debian:[a-z]+-slim", stages[-1]), f"runtime is not Debian slim: {stages[-1]}"
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0"), user
    assert re.search(r"^HEALTHCHECK\s.*\n?.*readyz", text, re.M), "no HEALTHCHECK on /readyz"
    build = re.search(r"^RUN\s+(cargo build[^\n\\&]*?)\s*(?:\\|&&|$)", text, re.M)
    assert build, "no `RUN cargo build` in the Dockerfile"
    command = " ".join(build.group(1).split())
    readme = (ROOT / "README.md").read_text()
    shown = f"`{command}`" in readme or command in (" ".join(line.split()) for line in readme.splitlines())
    assert shown, f"README does not show the Dockerfile's build command `{command}`"


# --- the compose environment, run with the binary ------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True, timeout=30)


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: under CI=true the compose environment must be run")
    pytest.skip(reason)


def test_compose_environment_serves_on_postgres(tmp_path):
    binary = os.environ.get("PATCHBAY_BIN")
    if not binary:
        unavailable("PATCHBAY_BIN unset (scripts/blackbox sets it)")
    if not shutil.which("psql"):
        unavailable("psql not installed (postgresql-client)")
    admin_url = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    try:
        psql(admin_url, "SELECT 1")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        unavailable(f"PostgreSQL does not answer at {urlsplit(admin_url).hostname}")
    db = "pb_compose_" + secrets.token_hex(6)
    psql(admin_url, f'CREATE DATABASE "{db}"')
    proc = None
    try:
        made = generated_secrets(tmp_path)
        parts = urlsplit(admin_url)
        # The compose file's database URL, with the host and database of the test server.
        compose_url = urlsplit((made / "database_url").read_text().strip())
        assert compose_url.hostname == "postgres" and compose_url.path == "/patchbay", compose_url
        (made / "database_url").write_text(urlunsplit(parts._replace(path=f"/{db}")) + "\n")
        # The compose file's Redis URL (password from redis_password), pointed at the test's Redis.
        password = (made / "redis_password").read_text().strip()
        assert (made / "redis_conf").read_text().strip() == f"requirepass {password}"
        redis_url = urlsplit((made / "redis_url").read_text().strip())
        assert (redis_url.hostname, redis_url.port, redis_url.password) == ("redis", 6379, password), redis_url
        test_redis = os.environ.get("TEST_REDIS_URL")
        if not test_redis:
            unavailable("TEST_REDIS_URL unset (the local Redis, without a password)")
        (made / "redis_url").write_text(test_redis + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
        for key, value in env_of(compose()["services"]["patchbay"]).items():
            if value.startswith("/run/secrets/"):
                value = str(made / value.removeprefix("/run/secrets/"))
            env[key] = value
        port = free_port()
        env["PATCHBAY_LISTEN"] = f"127.0.0.1:{port}"
        env["PATCHBAY_DATA_DIR"] = str(tmp_path / "data")
        proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = requests.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert proc.poll() is None, f"patchbay exited {proc.returncode}: {proc.stdout.read()[-3000:]}"
        assert ready is not None and ready.status_code == 200 and ready.json()["database"] == "postgres", ready
        # With Redis configured, the replica listens for invalidations there.
        listening = ""
        while time.monotonic() < deadline:
            listening = requests.get(f"{url}/metrics", timeout=5).text
            if "patchbay_invalidation_listening 1" in listening.splitlines():
                break
            time.sleep(0.2)
        assert "patchbay_invalidation_listening 1" in listening.splitlines(), "not listening on Redis"
        token = (made / "admin_token").read_text().strip()
        keys = requests.get(f"{url}/api/v1/admin/keys", headers={"x-api-key": token}, timeout=10)
        assert keys.status_code == 200 and keys.json()["primary"] == "k1", keys.text
        # Nothing was generated into the data directory: every secret came from a file.
        data = tmp_path / "data"
        generated = sorted(p.name for p in data.iterdir()) if data.exists() else []
        assert not {"master.key", "admin-token", "session.key"} & set(generated), generated
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        psql(admin_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
