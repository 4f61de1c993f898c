"""What drift counting costs in process: DriftRecorder.record per batch, and where bisect wins.

Usage: python -m bench.drift_counting [--store PATH] [--crossover]
Times `DriftRecorder.record` for the demo iris (4 features) and breast_cancer (30) versions at
1, 100 and 1,000 rows, in CPU time of this process (what other work on the machine disturbs
least), cycling through distinct batches so that the CPU's branch predictor cannot learn one
batch's searches. With --crossover, also the time of counting a batch row by row (bisect)
against the edge table, by rows and features, which is what `drift.BISECT_SEARCHES` is set from.
"""

from __future__ import annotations

import argparse
import itertools
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from sklearn.dummy import DummyRegressor

from bench.bodies import DATASETS
from bench.side_by_side import scratch_store
from ml_app import create_app
from ml_app.core import drift
from ml_app.core.drift_reference import BINS, PREDICTIONS_KEY
from ml_app.core.model import LoadedModel, Outputs

BATCHES = 64  # distinct batches cycled through per case


def cpu_microseconds(call: Callable[..., object], batches: list[tuple], number: int) -> float:
    """The best of 7 runs of `number` calls (one batch after another), CPU µs per call."""
    cycle = itertools.cycle(batches)
    timer = timeit.Timer(lambda: call(*next(cycle)), timer=time.process_time)
    return min(timer.repeat(number=number, repeat=7)) / number * 1e6


def jittered(data: np.ndarray, rows: int, random: np.random.Generator) -> np.ndarray:
    """Rows drawn from a dataset, each value moved by up to 3%: realistic and all distinct."""
    picked = data[random.integers(0, len(data), rows)]
    return picked * random.uniform(0.97, 1.03, picked.shape)


def record_costs(store: Path) -> None:
    """Print µs per `DriftRecorder.record` call for each demo model and batch size."""
    app = create_app({"store": store, "log_level": "CRITICAL", "drift_flush_seconds": 3600})
    recorder, registry = app.extensions["ml_app"].drift, app.extensions["ml_app"].registry
    random = np.random.default_rng(0)
    print("| model | rows | DriftRecorder.record, CPU µs |\n| --- | ---: | ---: |")
    for name, load in DATASETS.items():
        model = registry.snapshot().route(name, None, None).model
        for rows in (1, 100, 1000):
            batches = []
            for _ in range(BATCHES):
                matrix = jittered(load().data, rows, random)
                batches.append((model, matrix, model.predict(matrix)))
            cost = cpu_microseconds(recorder.record, batches, 20000 // rows)
            print(f"| {name} | {rows} | {cost:.1f} |", flush=True)


def crossover(store: Path) -> None:
    """Print bisect vs edge table per batch, breast_cancer's first 1/4/10/30 features."""
    metadata = orjson.loads((store / "breast_cancer" / "1" / "metadata.json").read_bytes())
    data, names = DATASETS["breast_cancer"]().data, metadata["feature_names"]
    random = np.random.default_rng(0)
    print("\n| features | rows | searches | bisect µs | table µs |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for features in (1, 4, 10, 30):
        chosen = names[:features]
        described = {
            "feature_names": chosen,
            "baseline": {feature: metadata["baseline"][feature] for feature in chosen},
            PREDICTIONS_KEY: {"kind": BINS, **metadata["baseline"][chosen[0]]},
        }
        estimator = DummyRegressor().fit(np.zeros((2, features)), [0.0, 1.0])
        bins = drift.VersionBins(
            LoadedModel("crossover", str(features), estimator, described), (), 10
        )
        for rows in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32):
            batches = []
            for _ in range(BATCHES):
                matrix = jittered(data[:, :features], rows, random)
                batches.append((matrix, Outputs(values=matrix[:, 0].tolist())))
            costs = []
            for threshold in (10**9, 0):  # every batch by bisect, then every batch by table
                drift.BISECT_SEARCHES = threshold
                costs.append(cpu_microseconds(bins.count, batches, 640))
            searches = rows * (features + 1)
            print(f"| {features} | {rows} | {searches} | {costs[0]:.1f} | {costs[1]:.1f} |")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="default: train into scratch")
    parser.add_argument("--crossover", action="store_true", help="also bisect vs edge table")
    args = parser.parse_args(argv)
    with scratch_store(args.store) as (_, store):
        record_costs(store)
        if args.crossover:
            crossover(store)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
