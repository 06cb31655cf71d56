"""Obtain the pinned Keycloak from Maven Central and run it in dev mode on loopback.

    python -m devstack.keycloak_server fetch
    python -m devstack.keycloak_server extension   # build keycloak-extension/ if needed
    python -m devstack.keycloak_server start [--instance dev] [--port 8080]
    python -m devstack.keycloak_server stop [--instance dev]
    python -m devstack.keycloak_server status [--instance dev]

Each instance (dev, test) has its own unpacked server and H2 database under the cache
directory, so the test suite never touches the data of the run command's Keycloak.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.process import cache_dir, http_ok, running_pid, spawn, stop, wait_until
from portal.secret_policy import DEV_EVENTS_SECRET

# The newest 26.x on Maven Central (checked 2026-11-23) and the first with every 2026
# manage-clients escalation fix of the 26.7 line (CVE-2026-16105 in 26.7.3); see docs/operators.md.
VERSION = "26.7.3"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:tar.gz"
SHA256 = "77657f30b7e90d70f727712ce1c967f430fd6a5e9f458d32d8c6df0635345f47"
# JDKs Keycloak 26.7 supports, best first (17 still works but is deprecated).
SUPPORTED_JDKS = (25, 21, 17)
JVM_ROOTS = (Path("/usr/lib/jvm"), Path("/opt/java"), Path("/usr/local/lib/jvm"))

# Keycloak's production options, one place for docker-compose and the cluster.
CONF = Path(__file__).resolve().parent.parent / "deploy" / "keycloak.conf"


# kc.sh's default heap is -Xmx512m, which tens of thousands of cached key clients outgrow
# (10,000 took about 50 MB of old generation on the cluster; 100,000 are estimated at 0.5 GB).
KEYCLOAK_HEAP = "-Xms64m -Xmx2g"


def conf_options() -> dict[str, str]:
    """The options of deploy/keycloak.conf, name to value."""
    lines = (line.strip() for line in CONF.read_text().splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


# Keycloak features the portal relies on beyond the defaults (dev mode too).
FEATURES = tuple(conf_options()["features"].split(","))

# The portal's event listener (keycloak-extension/), built by Maven, put in every instance's
# providers/ and told where to push: PORTAL_URL's /keycloak/events, signed with
# KEYCLOAK_EVENTS_SECRET (the dev profile's secret unless set).
EXTENSION = Path(__file__).resolve().parent.parent / "keycloak-extension"
EXTENSION_JAR = EXTENSION / "target" / "apikey-portal-event-listener.jar"

DEV_ADMIN_USERNAME = "admin"
DEV_ADMIN_PASSWORD = "admin"  # noqa: S105 - loopback dev server only, printed by bin/run


@dataclass(frozen=True)
class Instance:
    name: str
    port: int

    @property
    def management_port(self) -> int:
        return self.port + 920  # 8080 -> 9000, as Keycloak's own default pairing

    @property
    def root(self) -> Path:
        return cache_dir() / "keycloak" / self.name

    @property
    def home(self) -> Path:
        return self.root / f"keycloak-{VERSION}"

    @property
    def pid_file(self) -> Path:
        return self.root / "keycloak.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "keycloak.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}/health/ready"


def archive_path() -> Path:
    return cache_dir() / "keycloak" / f"keycloak-quarkus-dist-{VERSION}.tar.gz"


def fetch() -> Path:
    """Copy the distribution from Maven Central with Maven and check its SHA-256."""
    archive = archive_path()
    if archive.exists() and _sha256(archive) == SHA256:
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    print(f"Fetching {ARTIFACT} with Maven ...", flush=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={archive.parent}",
            "-Dmdep.overWriteReleases=true",
        ],
        check=True,
        cwd=tempfile.gettempdir(),  # keep Maven away from any pom.xml in the working tree
    )
    digest = _sha256(archive)
    if digest != SHA256:
        archive.unlink()
        raise RuntimeError(f"{archive.name}: SHA-256 {digest} does not match the pinned {SHA256}")
    return archive


def install(instance: Instance) -> Path:
    """Unpack the checked archive for `instance` unless it already is."""
    if (instance.home / "bin" / "kc.sh").exists():
        return instance.home
    archive = fetch()
    instance.root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(instance.root, filter="tar")
    return instance.home


def build_extension() -> Path:
    """The listener's jar, built with Maven when missing or older than its sources.

    Only the jar: its tests, format and lint run in `mvn verify`, which bin/test runs.
    """
    sources = [EXTENSION / "pom.xml", *(EXTENSION / "src").rglob("*")]
    newest = max(path.stat().st_mtime for path in sources if path.is_file())
    if EXTENSION_JAR.exists() and EXTENSION_JAR.stat().st_mtime >= newest:
        return EXTENSION_JAR
    java_home = find_java_home()
    environment = {**os.environ, "JAVA_HOME": str(java_home)}
    subprocess.run(
        ["mvn", "-B", "-q", "-f", str(EXTENSION / "pom.xml"), "package", "-DskipTests"],
        check=True,
        env=environment,
    )
    return EXTENSION_JAR


def listener_environment() -> dict[str, str]:
    """The listener's SPI options, as environment variables (they stay out of `ps`); ones
    already in the environment win."""
    portal = os.environ.get("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/")
    defaults = {
        "KC_SPI_EVENTS_LISTENER__APIKEY_PORTAL__URL": f"{portal}/keycloak/events",
        "KC_SPI_EVENTS_LISTENER__APIKEY_PORTAL__SECRET": os.environ.get(
            "KEYCLOAK_EVENTS_SECRET", DEV_EVENTS_SECRET
        ),
    }
    defaults |= registration_endpoint_environment(portal)
    return {name: os.environ.get(name, value) for name, value in defaults.items()}


def registration_endpoint_environment(portal: str) -> dict[str, str]:
    """The realm's discovery documents advertise the portal's registration endpoint (where
    software registers keys, RFC 7591), not Keycloak's own, which the portal closes: Keycloak's
    `openid-configuration-override` option, a JSON file merged into the documents."""
    override = (
        cache_dir()
        / "keycloak"
        / f"well-known-{hashlib.sha256(portal.encode()).hexdigest()[:12]}.json"
    )
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text(f'{{"registration_endpoint": "{portal}/register"}}\n')
    return {
        f"KC_SPI_WELL_KNOWN__{provider}__OPENID_CONFIGURATION_OVERRIDE": str(override)
        for provider in ("OPENID_CONFIGURATION", "OAUTH_AUTHORIZATION_SERVER")
    }


def find_java_home() -> Path:
    """The newest supported JDK on this machine (JAVA_HOME wins if it is supported)."""
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    for root in JVM_ROOTS:
        if root.is_dir():
            candidates.extend(sorted(p for p in root.iterdir() if not p.is_symlink()))
    found: dict[int, Path] = {}
    for home in candidates:
        major = _java_major(home)
        if major in SUPPORTED_JDKS and major not in found:
            found[major] = home
    for major in SUPPORTED_JDKS:
        if major in found:
            return found[major]
    raise RuntimeError(f"No JDK {'/'.join(map(str, SUPPORTED_JDKS))} found in {JVM_ROOTS}")


def is_ready(instance: Instance) -> bool:
    return http_ok(instance.ready_url)


def start(instance: Instance, *, timeout: float = 240) -> float:
    """Start `instance` in dev mode and wait until ready; return the seconds it took."""
    if running_pid(instance.pid_file) and is_ready(instance):
        return 0.0
    if is_ready(instance):
        raise RuntimeError(f"Another Keycloak already answers on port {instance.port}")
    began = time.monotonic()
    launch(
        instance,
        [
            "start-dev",
            "--http-host=127.0.0.1",
            f"--http-port={instance.port}",
            f"--http-management-port={instance.management_port}",
            "--health-enabled=true",
            # Preview in 26.7 (on by default from 26.8): a client policy's secret-rotation
            # executor keeps a key's secret expiry (and, later, a rotated secret) across
            # admin updates, which otherwise drop them. deploy/keycloak.conf enables it too.
            f"--features={','.join(FEATURES)}",
            # One client per key: caches sized for them (deploy/keycloak.conf says why).
            f"--cache-embedded-realms-max-count={conf_options()['cache-embedded-realms-max-count']}",
            f"--cache-embedded-users-max-count={conf_options()['cache-embedded-users-max-count']}",
        ],
        timeout=timeout,
    )
    return time.monotonic() - began


def launch(
    instance: Instance, args: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> None:
    """Run `kc.sh <args>` for `instance` (installed if needed) and wait until it is ready."""
    home = install(instance)
    provided = home / "providers" / EXTENSION_JAR.name
    # The same bytes are left as they are: a server started --optimized (the cluster's)
    # refuses a provider newer than its build, and the jar is reproducible.
    if not provided.exists() or not filecmp.cmp(build_extension(), provided, shallow=False):
        shutil.copy2(build_extension(), provided)
    java_home = find_java_home()
    environment = dict(os.environ)
    environment.update(
        JAVA_HOME=str(java_home),
        PATH=f"{java_home / 'bin'}{os.pathsep}{environment.get('PATH', '')}",
        KC_BOOTSTRAP_ADMIN_USERNAME=DEV_ADMIN_USERNAME,
        KC_BOOTSTRAP_ADMIN_PASSWORD=DEV_ADMIN_PASSWORD,
        JAVA_OPTS_KC_HEAP=KEYCLOAK_HEAP,
        **listener_environment(),
        **(env or {}),
    )
    spawn(
        [str(home / "bin" / "kc.sh"), *args],
        pid_file=instance.pid_file,
        log_file=instance.log_file,
        env=environment,
    )
    wait_until(
        lambda: is_ready(instance) or running_pid(instance.pid_file) is None,
        timeout=timeout,
        what=f"Keycloak ({instance.name})",
        log_file=instance.log_file,
    )
    if not is_ready(instance):
        tail = instance.log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Keycloak ({instance.name}) exited while starting:\n{tail}")


def stop_instance(instance: Instance) -> bool:
    return stop(instance.pid_file, timeout=60)


def _java_major(home: Path) -> int | None:
    release = home / "release"
    if not (home / "bin" / "java").exists() or not release.exists():
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.keycloak_server")
    actions = ["fetch", "extension", "start", "stop", "status", "java", "reset"]
    parser.add_argument("action", choices=actions)
    parser.add_argument("--instance", default="dev")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--fresh", action="store_true", help="start: on an empty database (the old one removed)"
    )
    args = parser.parse_args(argv)
    instance = Instance(args.instance, args.port)
    if args.action == "fetch":
        print(fetch())
    elif args.action == "extension":
        print(build_extension())
    elif args.action == "java":
        print(find_java_home())
    elif args.action == "start":
        if args.fresh:
            stop_instance(instance)
            shutil.rmtree(instance.home / "data", ignore_errors=True)  # dev mode's H2 files
        took = start(instance)
        how = "already running" if took == 0 else f"ready in {took:.1f}s"
        print(f"Keycloak {VERSION} ({instance.name}) on {instance.url}: {how}")
    elif args.action == "stop":
        print("stopped" if stop_instance(instance) else "not running")
    elif args.action == "reset":
        stop_instance(instance)
        shutil.rmtree(instance.root, ignore_errors=True)
        print(f"removed {instance.root}")
    else:
        up = is_ready(instance)
        print(f"Keycloak ({instance.name}) on {instance.url}: {'ready' if up else 'down'}")
        return 0 if up else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
