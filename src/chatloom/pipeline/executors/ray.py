"""The Ray executor: the per-conversation steps on Ray Data. Each window of chunks is a dataset,
mapped in order (``preserve_order``) by tasks that build the recipe's steps once per Ray worker
process (``_ray_apply``). Connects to ``RAY_ADDRESS`` when it is set, else starts a local Ray with
``workers`` CPUs. The chunks travel through Ray's object store, so the workers may be on other
machines."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import orjson

from ...errors import ChatloomError, ParamError
from ...model import Conversation
from ..base import Step
from .base import ChunkResult, Executor, StepKey, recipe_steps, run_chunk


class RayExecutor(Executor):
    WINDOW = 64  # chunks per dataset: bounded memory, few dataset start-ups

    def __init__(self, recipe: dict[str, Any], workers: int):
        try:
            import ray
            import ray.data
        except ImportError:
            raise ParamError("{executor} ray needs Ray: pip install 'chatloom[ray]'") from None
        import logging
        import os

        self.recipe = recipe
        self.started = not ray.is_initialized()
        if self.started:
            address = os.environ.get("RAY_ADDRESS")
            ray.init(address=address or None, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def map(self, keys: list[StepKey], chunks: Iterable[list[Conversation]]) -> Iterator[ChunkResult]:
        import ray.data

        encode = msgspec.json.Encoder()
        window: list[bytes] = []

        def run(payloads: list[bytes]) -> Iterator[ChunkResult]:
            ds = ray.data.from_items([{"payload": p} for p in payloads], override_num_blocks=len(payloads))
            ds = ds.map_batches(_ray_apply, fn_kwargs={"recipe": self.recipe, "keys": keys}, batch_size=1)
            for row in ds.iter_rows():
                result = pickle.loads(row["result"])
                if isinstance(result, ChatloomError):  # a step's own error (a regex's timeout), sent back whole
                    raise result
                yield result

        for chunk in chunks:
            window.append(encode.encode(chunk))
            if len(window) == self.WINDOW:
                yield from run(window)
                window = []
        if window:
            yield from run(window)

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


# -- in each Ray worker process ------------------------------------------------------------------

_ray_recipes: dict[str, dict[StepKey, Step[Any]]] = {}  # a worker may serve several recipes
_decode = msgspec.json.Decoder(list[Conversation])


def _ray_apply(batch: dict[str, Any], recipe: dict[str, Any], keys: list[StepKey]) -> dict[str, Any]:
    import numpy as np

    key = orjson.dumps(recipe, option=orjson.OPT_SORT_KEYS).decode()
    steps = _ray_recipes.get(key)
    if steps is None:
        steps = _ray_recipes[key] = recipe_steps(recipe)
    results = [_chunk_result([steps[(k[0], k[1])] for k in keys], bytes(p)) for p in batch["payload"]]
    return {"result": np.array(results, dtype=object)}


def _chunk_result(steps: list[Step[Any]], payload: bytes) -> bytes:
    """A chunk's result, pickled; or the chatloom error a step raised, pickled as the result: raised
    in the task, Ray would hand the driver its own wrapper with the error only as text."""
    try:
        return pickle.dumps(run_chunk(steps, _decode.decode(payload)))
    except ChatloomError as err:
        return pickle.dumps(err)
