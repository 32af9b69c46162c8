"""A throwaway Redis Cluster on free ports: N redis-servers with --cluster-enabled, joined by
`redis-cli --cluster create`, awaited until every node says cluster_state:ok."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.integration.servers import DURABLE_REDIS, RedisExited, free_port, wait_for_redis

# Failover after a primary has been unreachable this long (Redis' default is 15 s).
NODE_TIMEOUT_MS = 1000
START_ATTEMPTS = 3


class ClusterNode:
    """One redis-server of the cluster (its cluster bus on a port of its own)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.parent = directory
        self.process: subprocess.Popen[bytes] | None = None
        # Ports are free when picked, not reserved: another process may take one before
        # redis-server binds it. Then it exits at once, and new ports are picked.
        for attempt in range(START_ATTEMPTS):
            self._pick_ports()
            self.start()
            assert self.process is not None
            try:
                wait_for_redis(self.process, self.client(), self.directory / "redis.log")
                return
            except RedisExited:
                if attempt == START_ATTEMPTS - 1:
                    raise

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.bus_port = free_port()
        self.directory = self.parent / f"node-{self.port}"
        self.directory.mkdir(parents=True)
        self.args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port), "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), *DURABLE_REDIS,
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip

    def start(self) -> None:
        self.process = subprocess.Popen(self.args)

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=0.5, decode_responses=True)

    def info(self, section: str) -> dict[str, Any]:
        return dict(self.client().info(section))

    def kill(self) -> None:
        """kill -9: the cluster notices after NODE_TIMEOUT_MS and promotes a replica."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class RedisClusterServers:
    """`primaries` primaries with `replicas` replicas each, durable (appendfsync always)."""

    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 0) -> None:
        binary = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            raise FileNotFoundError(
                "redis-server and redis-cli are not installed (apt-get install -y redis-server)"
            )
        self.nodes = [ClusterNode(binary, directory) for _ in range(primaries * (1 + replicas))]
        try:
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The store URL: any one node; the client discovers the rest."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node reports cluster_state:ok with all slots assigned."""
        import redis

        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.live():
                with contextlib.suppress(redis.ConnectionError):
                    info = node.client().cluster("info")
                    states.append(info.get("cluster_state") == "ok")
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)  # gossip converges on its own schedule: poll it

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def role(self, node: ClusterNode) -> str:
        return str(node.info("replication")["role"])

    def owner_of(self, key: str) -> ClusterNode:
        """The primary serving the slot of `key` right now."""
        from redis.cluster import RedisCluster

        seed = self.live()[0]
        cluster = RedisCluster(host="127.0.0.1", port=seed.port, socket_connect_timeout=0.5)
        try:
            port = int(cluster.get_node_from_key(key).port)
        finally:
            cluster.close()
        return next(n for n in self.nodes if n.port == port)

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        for node in self.live():
            info = node.info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                return node
        raise LookupError(f"no replica of {primary.port}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
