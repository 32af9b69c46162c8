"""Mobile-style churn: thousands of ScoreStream and Score calls cancelled by the client at
random points, then 100 unary calls to see whether the server still admits work.

The admission tests use it; `python -m tests.integration.churn --target HOST:PORT` runs the
same probe against any server (the lock-out figure of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections import Counter

import grpc

from reco.v1 import recommender_pb2 as pb
from reco.v1 import recommender_pb2_grpc as pb_grpc


def score_request(n: int = 20) -> pb.ScoreRequest:
    """A small Score call for the first `n` catalog products."""
    ids = [f"PROD{i:04d}" for i in range(1, n + 1)]
    return pb.ScoreRequest(context=pb.SessionContext(current_product_id="PROD0100"),
                           candidate_ids=ids)  # fmt: skip


async def cancel_storm(target: str, calls: int, seed: int) -> dict[str, int]:
    """`calls` ScoreStream and `calls` Score calls, each cancelled by the client after a random
    0-3 ms: before it is sent, while queued, mid-stream or while being answered."""
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}

    def note(exc: grpc.aio.AioRpcError | None) -> None:
        key = "ended by the server" if exc is None else f"{exc.code().name}: {exc.details()}"
        outcomes[key] = outcomes.get(key, 0) + 1

    request = score_request()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)

        async def stream() -> None:
            call = stub.ScoreStream()
            try:
                for _ in range(rng.randint(0, 3)):
                    await call.write(request)
                    if rng.random() < 0.5:
                        await call.read()
                await asyncio.sleep(rng.uniform(0, 0.003))
            except grpc.aio.AioRpcError as exc:
                note(exc)
            except asyncio.InvalidStateError:  # the server ended it (refused) before a write
                note(None)
            call.cancel()

        async def unary() -> None:
            call = stub.Score(request)
            await asyncio.sleep(rng.uniform(0, 0.003))
            call.cancel()
            try:
                await call
                outcomes["OK"] = outcomes.get("OK", 0) + 1
            except asyncio.CancelledError:
                outcomes["cancelled"] = outcomes.get("cancelled", 0) + 1
            except grpc.aio.AioRpcError as exc:
                note(exc)

        pending: set[asyncio.Task[None]] = set()
        for _ in range(calls):
            for make in (stream, unary):
                pending.add(asyncio.create_task(make()))
            if len(pending) >= 64:  # a bounded crowd of clients, churning
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)
    return outcomes


def unary_after(target: str, calls: int = 100) -> Counter[str]:
    """Status codes of `calls` Score calls made one after another."""
    codes: Counter[str] = Counter()
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RecommenderStub(channel)
        for _ in range(calls):
            try:
                stub.Score(score_request(), timeout=10)
                codes["OK"] += 1
            except grpc.RpcError as exc:
                codes[exc.code().name] += 1
    return codes


def main(argv: list[str] | None = None) -> int:
    """Prints what the churn got, then what 100 unary calls get after it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--calls", type=int, default=1000, help="cancelled calls of each kind")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args(argv)
    outcomes = asyncio.run(cancel_storm(args.target, args.calls, args.seed))
    print(f"churn: {outcomes}")
    after = unary_after(args.target)
    print(f"after {args.calls} cancelled ScoreStream and {args.calls} cancelled Score calls, "
          f"100 Score calls got: {dict(after)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
