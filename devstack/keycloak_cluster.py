"""Keycloak as it runs in production: `kc.sh start`, two nodes on PostgreSQL, behind nginx.

    python -m devstack.keycloak_cluster start     # nodes on 8481 and 8482, nginx on 8480
    python -m devstack.keycloak_cluster stop
    python -m devstack.keycloak_cluster kill N    # SIGKILL node N (1 or 2), as a crash
    python -m devstack.keycloak_cluster restart N

Each node is its own unpacked server (instances "cluster1", "cluster2") with the options of
deploy/keycloak.conf, the file docker-compose mounts, so the two cannot drift. The nodes
share the database `keycloak_cluster` on the project's PostgreSQL and find each other with
Keycloak's default discovery (JGroups' JDBC_PING in that database; mTLS between nodes, its
certificates kept there too); the realm cache is invalidated across nodes and sessions are
distributed. nginx (Debian's package) balances round robin and passes a request that finds
a node dead to the other one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from devstack import postgres, process
from devstack.keycloak_server import (
    CONF,
    EXTENSION_JAR,
    Instance,
    build_extension,
    find_java_home,
    install,
    is_ready,
    launch,
)
from devstack.process import cache_dir, running_pid, spawn, stop

BALANCER_PORT = 8480
NODES = (Instance("cluster1", 8481), Instance("cluster2", 8482))
DATABASE = "keycloak_cluster"
JGROUPS_PORTS = {"cluster1": 7801, "cluster2": 7802}
NGINX = Path("/usr/sbin/nginx")
FORGET_MEMBERS = (  # the table exists once a node has started
    "DO $$ BEGIN IF to_regclass('jgroups_ping') IS NOT NULL THEN DELETE FROM jgroups_ping; "
    "END IF; END $$"
)


def url() -> str:
    """Where the portal and browsers reach the cluster: the load balancer."""
    return f"http://127.0.0.1:{BALANCER_PORT}"


def _root() -> Path:
    return cache_dir() / "keycloak-cluster"


def start(*, timeout: float = 300) -> float:
    """Start both nodes (one after the other: the first migrates the schema) and nginx."""
    began = time.monotonic()
    postgres.ensure_database(DATABASE)
    if not any(running_pid(node.pid_file) for node in NODES):
        # Nodes that were killed leave their addresses in JDBC_PING's table; a new node
        # would wait for them to answer its JOIN, then give up. None runs: forget them all.
        postgres.execute(DATABASE, FORGET_MEMBERS)
    build([node for node in NODES if not running_pid(node.pid_file)])
    for node in NODES:
        start_node(node, timeout=timeout)
    _start_nginx()
    return time.monotonic() - began


def build(nodes: list[Instance]) -> None:
    """`kc.sh build` the nodes whose build is not of this deploy/keycloak.conf and extension
    (a marker file holds their digest), all at once: each then starts `--optimized`, instead
    of building again at every start (about 15 s a node on these machines)."""
    wanted = _build_digest()
    pending = [node for node in nodes if _built_for(node) != wanted]
    environment = {**os.environ, "JAVA_HOME": str(find_java_home())}
    builds = []
    for node in pending:
        home = install(node)
        shutil.copyfile(CONF, home / "conf" / "keycloak.conf")
        shutil.copy2(build_extension(), home / "providers" / EXTENSION_JAR.name)
        print(f"Building Keycloak for {node.name} (kc.sh build, once per configuration)…")
        with node.log_file.open("ab") as log:
            command = [str(home / "bin" / "kc.sh"), "build"]
            running = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
            builds.append((node, running))
    for node, running in builds:
        if running.wait(timeout=600) != 0:
            raise RuntimeError(f"kc.sh build failed for {node.name}; see {node.log_file}")
        (node.home / BUILT_FOR).write_text(wanted)


BUILT_FOR = "built-for"  # in each node's server: the digest its build was made for


def _built_for(node: Instance) -> str:
    marker = node.home / BUILT_FOR
    return marker.read_text(errors="replace") if marker.exists() else ""


def _build_digest() -> str:
    """keycloak.conf and the extension's jar as it will be copied in: Keycloak started
    `--optimized` with another jar than it was built with does not come up."""
    digest = hashlib.sha256(CONF.read_bytes())
    digest.update(build_extension().read_bytes())
    return digest.hexdigest()


def start_node(node: Instance, *, timeout: float = 300) -> None:
    if running_pid(node.pid_file) and is_ready(node):
        return
    build([node])
    launch(
        node,
        [
            "start",
            "--optimized",
            f"--hostname={url()}",
            "--http-host=127.0.0.1",
            f"--http-port={node.port}",
            f"--http-management-port={node.management_port}",
            f"--db-url=jdbc:postgresql://127.0.0.1:{postgres.DEFAULT_PORT}/{DATABASE}",
            "--db-username=postgres",
            "--cache-embedded-network-bind-address=127.0.0.1",
            f"--cache-embedded-network-bind-port={JGROUPS_PORTS[node.name]}",
        ],
        timeout=timeout,
        env={"KC_DB_PASSWORD": "unused"},  # the project's PostgreSQL trusts loopback
    )


def kill(number: int) -> None:
    """SIGKILL node `number`: a crash, no goodbye to the other node."""
    process.kill(NODES[number - 1].pid_file)


def stop_all() -> None:
    stop(_root() / "nginx.pid", timeout=10)
    for node in NODES:
        stop(node.pid_file, timeout=60)


def _start_nginx() -> None:
    root = _root()
    pid_file = root / "nginx.pid"
    if running_pid(pid_file):
        return
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(_nginx_conf(root))
    spawn(
        [str(NGINX), "-c", str(conf), "-p", str(root)],
        pid_file=pid_file,
        log_file=root / "nginx.log",
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = subprocess.run(["curl", "-sf", f"{url()}/realms/master"], capture_output=True)
        if answer.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"nginx did not answer on {url()}; see {root}/nginx-error.log")


def _nginx_conf(root: Path) -> str:
    """The balancer in front of the nodes, as a reverse proxy in production would be."""
    upstreams = "\n".join(
        f"        server 127.0.0.1:{node.port} max_fails=1 fail_timeout=5s;" for node in NODES
    )
    return f"""daemon off;
worker_processes 1;
pid {root}/nginx.master.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    # nginx's workers run as nobody and cannot write temporary files under the cache
    # directory: request bodies (a partial import of 250 clients) stay in memory, and large
    # answers (pages of clients) are passed on as they come instead of spooled to disk.
    client_max_body_size 16m;
    client_body_buffer_size 16m;
    proxy_max_temp_file_size 0;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream keycloak {{
{upstreams}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{BALANCER_PORT};
        location / {{
            proxy_pass http://keycloak;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_connect_timeout 2s;
            # A node that died or is starting: the request goes to the other one.
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
        }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.keycloak_cluster")
    parser.add_argument("action", choices=["start", "stop", "kill", "restart"])
    parser.add_argument("node", nargs="?", type=int, choices=[1, 2])
    args = parser.parse_args(argv)
    if args.action == "start":
        took = start()
        print(f"Keycloak cluster ({len(NODES)} nodes, `kc.sh start`) on {url()}: {took:.1f}s")
    elif args.action == "stop":
        stop_all()
    elif args.node is None:
        parser.error("kill and restart need a node: 1 or 2")
    elif args.action == "kill":
        kill(args.node)
    else:
        kill(args.node)
        start_node(NODES[args.node - 1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
