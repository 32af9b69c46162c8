"""`python -m training loop`: serve, log, learn, estimate off-policy, hot-reload as B, A/B online.

Everything the shoppers do goes through the server's public gRPC API; the new bundle is
installed through the Admin listener. Steps:

1. serve bundle A with slate-level epsilon-greedy exploration and the impression log on;
2. N sessions of simulated shoppers (training/shoppers.py);
3. `learn` a bundle from that log (compiled like any other) and estimate its click rate on the
   logged traffic (IPS, SNIPS, DR), beside the simulator's true value of that policy;
4. hot-reload it as variant B (Admin.ReloadModel), M more sessions;
5. read the log out per variant (online CTR with intervals, difference, sample ratio) and
   write report.md with plots.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from reco import SigningKey
from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc
from reco.v1.health import wait_for_health
from training.learn import LearnSettings, learn
from training.logs import attribute, read_events, read_responses
from training.ope import Truth, off_policy
from training.readout import readout, to_markdown
from training.shoppers import Shoppers

log = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 0.5
THRESHOLD = 0.7  # the reference notebook's confidence threshold


@dataclass(frozen=True)
class LoopSettings:
    """What one run of the loop does (see `python -m training loop --help`)."""

    data: Path  # generated data: catalog.csv and generation.json (the shoppers' world)
    bundle_a: Path  # compiled bundle served first (its directory's parent is the bundle root)
    out: Path  # the run's directory: logs/, the learned bundle, report.md, plots
    sessions_before: int
    sessions_after: int
    epsilon: float
    seed: int
    window_seconds: float
    threads: int = 2
    key_file: Path | None = None


class Server:
    """`python -m server` serving bundle A with the log and exploration on."""

    def __init__(self, settings: LoopSettings, runtime: Path) -> None:
        self.port, self.metrics_port = _free_port(), _free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.admin = runtime / "admin.sock"
        self.log_path = settings.out / "server.log"
        args = [
            sys.executable, "-m", "server", "--bundle", str(settings.bundle_a),
            "--port", str(self.port), "--metrics-port", str(self.metrics_port),
            "--admin-address", f"unix:{self.admin}", "--runtime-dir", str(runtime),
            "--impression-log-dir", str(settings.out / "logs"),
            "--impression-log-interval-seconds", str(LOG_INTERVAL_SECONDS),
            "--explore-epsilon", f"A={settings.epsilon},B=0", "--explore-seed", str(settings.seed),
            "--watch-seconds", "0", "--warmup-requests", "20",
        ]  # fmt: skip
        env = dict(os.environ)
        if settings.key_file is not None:
            env["RECO_BUNDLE_KEY_FILE"] = str(settings.key_file)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_for_health(self.target, 180, service="", process=self.process)

    def written(self) -> float:
        """Impressions the server's log has put into complete files (its /metrics counter)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith('reco_log_records_written_total{kind="impressions"}'):
                return float(line.split()[-1])
        return 0.0

    def wait_written(self, responses: int, timeout: float = 60) -> None:
        """Returns once `responses` impressions are in complete files."""
        deadline = time.monotonic() + timeout
        while self.written() < responses:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the server's log did not reach {responses} impressions")
            time.sleep(LOG_INTERVAL_SECONDS / 2)

    def reload_as_b(self, bundle: str) -> str:
        """Admin.ReloadModel: installs `bundle` (relative to the root) as variant B."""
        with grpc.insecure_channel(f"unix:{self.admin}") as channel:
            stub = pb_grpc.AdminStub(channel)
            answer = stub.ReloadModel(pb.ReloadModelRequest(bundle_path=bundle, variant="B"),
                                      timeout=300)  # fmt: skip
        if not answer.swapped:
            raise RuntimeError(f"ReloadModel refused {bundle}: {answer.error}")
        return answer.model_version

    def stop(self) -> None:
        """SIGTERM: the server flushes its log before it exits."""
        self.process.terminate()
        self.process.wait(60)
        self._log.close()


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(settings: LoopSettings, key: SigningKey | None) -> dict[str, Any]:
    """The whole loop; writes settings.out/report.md and result.json, returns the result."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    runtime = Path(f"/tmp/reco-loop-{os.getuid()}-{os.getpid()}")
    runtime.mkdir(mode=0o700, exist_ok=True)
    shoppers = Shoppers(settings.data, settings.seed, f"loop{settings.seed}")
    started = time.monotonic()
    server = Server(settings, runtime)
    result: dict[str, Any] = {"settings": {k: str(v) for k, v in settings.__dict__.items()}}
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            before = dict(shoppers.run(stub, settings.sessions_before).__dict__)
            server.wait_written(before["responses"])
            result["before"] = before
            learned = settings.bundle_a.parent / f"{out.name}-learned"
            report = learn(LearnSettings(out / "logs", settings.bundle_a, learned,
                                         settings.window_seconds, threads=settings.threads),
                           key)  # fmt: skip
            result["learned"] = report
            _compile(learned, settings)
            truth = Truth(shoppers.truth, shoppers.index)
            result["ope"] = off_policy(out / "logs", learned, settings.window_seconds,
                                       settings.seed, truth)  # fmt: skip
            swap_ms = int(time.time() * 1000)
            result["variant_b"] = server.reload_as_b(learned.name)
            total = shoppers.run(stub, settings.sessions_after, first=settings.sessions_before)
            server.wait_written(total.responses)
            result["after"] = {k: v - before[k] for k, v in total.__dict__.items()
                               if isinstance(v, int)}  # fmt: skip
            result["errors"] = total.errors
    finally:
        server.stop()
    responses = read_responses(out / "logs")
    slots = attribute(responses, read_events(out / "logs"), settings.window_seconds)
    phase_two = slots.frame["time_ms"].to_numpy() >= swap_ms
    online = slots.where(phase_two)
    result["readout"] = readout(online, {"A": 0.5, "B": 0.5})
    greedy_a = phase_two & ~slots.frame["explored"].to_numpy(bool)
    result["readout_greedy_only"] = readout(slots.where(greedy_a), {"A": 0.5, "B": 0.5})
    result["at_threshold"] = at_threshold(online, THRESHOLD)
    result["seconds"] = time.monotonic() - started
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    _write_report(out, result)
    return result


def at_threshold(slots: Any, threshold: float) -> dict[str, Any]:
    """The reference notebook's measure, online: CTR of the shown slots the serving model
    scored at or above `threshold`, per variant, and its lift over variant A's CTR of every
    shown slot (the notebook's baseline: everything the context-free recommender showed)."""
    frame = slots.frame.assign(clicked=slots.clicked)
    base = frame[frame["variant"] == "A"]["clicked"].mean()
    out: dict[str, Any] = {"threshold": threshold, "baseline_ctr_A": float(base)}
    for variant, part in frame.groupby("variant"):
        confident = part[part["score"] >= threshold]
        ctr = float(confident["clicked"].mean()) if len(confident) else float("nan")
        out[str(variant)] = {"slots": len(confident), "ctr": ctr,
                             "lift_over_A": ctr / base - 1 if base else float("nan")}  # fmt: skip
    return out


def _compile(bundle: Path, settings: LoopSettings) -> None:
    env = dict(os.environ)
    if settings.key_file is not None:
        env["RECO_BUNDLE_KEY_FILE"] = str(settings.key_file)
    done = subprocess.run([sys.executable, "-m", "compiler", "build", str(bundle)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"compiler build {bundle} failed:\n{done.stderr[-2000:]}")


def _threshold_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        f"CTR of the shown slots the serving variant scored >= {found['threshold']}, against "
        f"A's CTR over every shown slot ({found['baseline_ctr_A']:.4f}); the notebook "
        "claims +62.7% for its session model offline.",
        "",
        "| variant | slots scored >= threshold | their CTR | lift over A's CTR |",
        "|---|---|---|---|",
    ]
    for name in ("A", "B"):
        if name in found:
            v = found[name]
            lines.append(f"| {name} | {v['slots']} | {v['ctr']:.4f} | {v['lift_over_A']:+.1%} |")
    return lines


def _write_report(out: Path, result: dict[str, Any]) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ope = result["ope"]
    variants = result["readout"]["variants"]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels, values, lows, highs = [], [], [], []
    for v in variants:
        labels.append(f"online {v['variant']}")
        values.append(v["ctr"])
        lows.append(v["low"])
        highs.append(v["high"])
    for name, e in ope["estimates"].items():
        labels.append(f"OPE {name} (B)")
        values.append(e["value"])
        lows.append(e["low"])
        highs.append(e["high"])
    x = np.arange(len(labels))
    ax.errorbar(x, values, yerr=[np.subtract(values, lows), np.subtract(highs, values)],
                fmt="o", capsize=4)  # fmt: skip
    ax.axhline(
        ope["true_ctr_of_target"],
        color="grey",
        ls="--",
        label="simulator's true CTR of B on A's traffic",
    )
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel("clicks per shown slot")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ctr.png", dpi=110)
    plt.close(fig)
    lines = [
        "# The loop, end to end",
        "",
        f"Variant A: `{result['settings']['bundle_a']}` served with epsilon-greedy "
        f"{result['settings']['epsilon']}; {result['before']['sessions']} sessions "
        f"({result['before']['responses']} Recommend responses, {result['before']['clicks']} "
        "clicks) logged, then learned into variant B "
        f"`{result['variant_b']}` ({result['learned']['rows']} rows, "
        f"{result['learned']['sessions']} sessions, click rate "
        f"{result['learned']['click_rate']:.4f}, time range {result['learned']['time_range']}), "
        f"hot-reloaded beside A; then {result['after']['sessions']} more sessions split "
        f"between A and B. Run time {result['seconds']:.0f} s; calls the server refused: "
        f"{result['errors'] or 'none'}.",
        "",
        "## Off-policy estimate of B, made before the swap (on A's logged traffic)",
        "",
        "| estimator | CTR per slot [95% bootstrap CI] | covers the simulator's truth |",
        "|---|---|---|",
    ]
    for name, e in ope["estimates"].items():
        lines.append(f"| {name} | {e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}] | "
                     f"{'yes' if ope['covered'][name] else 'no'} |")  # fmt: skip
    lines += [
        "",
        f"Simulator's true CTR of B's policy on those responses: {ope['true_ctr_of_target']:.4f}; "
        f"of what A showed: {ope['true_ctr_of_logged']:.4f} (logged: {ope['logged_ctr']:.4f}). "
        f"The IPS-type estimates rest on {ope['effective_slots']:.0f} effective slots of "
        f"{ope['slots']}.",
        "",
        "## Online readout after the swap",
        "",
        *to_markdown(result["readout"]),
        "",
        "A's exploring responses left out (A's greedy policy against B's):",
        "",
        *to_markdown(result["readout_greedy_only"]),
        "",
        "### The reference notebook's measure, online",
        "",
        *_threshold_lines(result["at_threshold"]),
        "",
        "![CTR](ctr.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
