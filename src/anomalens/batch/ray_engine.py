"""The Ray engine: Ray Data spreads the items over a pool of actors, each of which loads the
model once and inspects batches with `map_batches`; outcomes come back to the driver, which
writes them like any engine's.

Each batch is one block of the dataset, so a worker that dies loses that batch only, and Ray
retries it on another actor. An image that cannot be read or scored is an error outcome, never
a failed task. Ray is an optional extra: `pip install 'anomalens[ray]'`.
"""

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from anomalens.batch.local import BATCH
from anomalens.batch.outcomes import Outcome, inspect
from anomalens.batch.sources import Item
from anomalens.detector import Detector
from anomalens.errors import AnomalensError


class Scorer:
    """A Ray Data actor: the model loaded once, then batches of items inspected."""

    def __init__(self, load: Callable[[], Detector]):
        self.detector = load()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        items = [Item(str(s), str(n)) for s, n in zip(batch["source"], batch["name"], strict=True)]
        columns = [outcome.columns() for outcome in inspect(self.detector, items)]
        return {key: [column[key] for column in columns] for key in ("record", "mask", "overlay")}


class RayEngine:
    """Inspect on a Ray cluster.

    Args:
        load: builds the detector in each actor (`functools.partial(Detector.load, MODEL)`);
            the model folder must be readable at that path on every node.
        address: the cluster to join ("auto", "ray://host:10001", "host:6379"); None joins a
            cluster this process already started, else starts a local one.
        workers: actors in the pool, one CPU each; None: one per CPU of the cluster.
        batch_size: images per batch (and per block of the dataset).
    """

    def __init__(
        self,
        load: Callable[[], Detector],
        address: str | None = None,
        workers: int | None = None,
        batch_size: int = BATCH,
    ):
        if workers is not None and workers < 1:
            raise AnomalensError(f"--workers must be at least 1, got {workers}")
        self.load = load
        self.address = address
        self.workers = workers
        self.batch_size = batch_size

    def outcomes(self, items: Sequence[Item]) -> Iterator[Outcome]:
        if not items:
            return
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never call home
            ray.init(
                address=self.address,
                num_cpus=None if self.address else self.workers,
                include_dashboard=False,
                logging_level="warning",
            )
        try:
            yield from self._run(ray, items)
        except ray.exceptions.RayError as error:
            raise AnomalensError(f"the Ray job failed: {error}") from None
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, items: Sequence[Item]) -> Iterator[Outcome]:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        workers = self.workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
        rows = [{"source": item.source, "name": item.name} for item in items]
        dataset = ray.data.from_items(
            rows, override_num_blocks=math.ceil(len(rows) / self.batch_size)
        )
        scored = dataset.map_batches(
            Scorer,
            fn_constructor_args=(self.load,),
            batch_size=self.batch_size,
            concurrency=min(workers, len(items)),
            num_cpus=1,
            batch_format="numpy",
        )
        for batch in scored.iter_batches(batch_size=None, batch_format="numpy"):
            for columns in zip(batch["record"], batch["mask"], batch["overlay"], strict=True):
                yield Outcome.from_columns(*columns)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise AnomalensError("--engine ray needs Ray: pip install 'anomalens[ray]'") from None
    return ray
