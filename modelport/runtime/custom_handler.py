"""A replica's handler for a custom model: one MLflow pyfunc model behind the Batcher.

Started as ``python -m modelport.runtime.worker --socket PATH --kind custom --model-path DIR``
(``--kind custom`` is the default). A PREDICT body is parsed on the event loop
(``CustomModel.parse``: bad input is a 400 at once) and queued on the
:class:`~modelport.runtime.batching.Batcher`, whose loop runs the model in one thread and
predicts concurrent DataFrame requests together. A custom model does not stream.

A model that looks its features up (``modelport/features/mlflow_model.py``) answers with a
trailer (``runtime/protocol.py``'s OK_TRAILER) when a key of the request found no row, or when
the request came as PREDICT_RECORDED (the endpoint's inference table is on): the rows its raw
model received, so that the gateway records them. Other models answer a plain OK.
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from typing import Any

from modelport.entities.custom import CustomModel, Lookups
from modelport.runtime.batching import Batcher, Outcome
from modelport.runtime.protocol import Trailer
from modelport.runtime.replica_server import Handler
from modelport.tables.records import MAX_BODY_BYTES, clip

__all__ = ["CustomHandler", "trailer_of"]


class CustomHandler(Handler):
    def __init__(self, model: CustomModel, batcher: Batcher) -> None:
        self.model = model
        self.batcher = batcher
        self.what = ", ".join(model.flavors)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("custom model (--kind custom)")
        group.add_argument("--model-path", required=True, help="Local folder holding the MLmodel file.")
        group.add_argument(
            "--batching",
            choices=["auto", "on", "off"],
            default="auto",
            help="Predict concurrent DataFrame requests together: 'auto' for batch-capable flavors.",
        )
        group.add_argument("--max-batch-size", type=int, default=1024, help="Most rows in one batch.")
        group.add_argument(
            "--max-batch-wait-ms",
            type=float,
            default=2.0,
            help="Longest wait for a batch to fill, when requests are already waiting.",
        )

    @classmethod
    def load(cls, args: argparse.Namespace) -> CustomHandler:
        """Load the model (outside the event loop: a model's own loading may run one)."""
        from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

        # What `mlflow models serve` sets: type-hinted models then parse JSON values (e.g. datetimes).
        _MLFLOW_IS_IN_SERVING_ENVIRONMENT.set("true")
        model = CustomModel.load(args.model_path)
        batcher = Batcher(model, args.batching, args.max_batch_size, args.max_batch_wait_ms / 1000.0)
        return cls(model, batcher)

    async def predict(self, payload: bytes) -> bytes:
        return (await self.predict_with_trailer(payload, False))[0]

    async def predict_with_trailer(self, payload: bytes, recorded: bool) -> tuple[bytes, Trailer | None]:
        """The answer, and for a model that looks its features up, a trailer when it has something
        to say: keys that found no row, and (``recorded``) the rows its raw model received."""
        inp = self.model.parse(payload)
        inp.keep_input = recorded
        answered: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.batcher.submit(inp, partial(_settle, answered))
        outcome = await answered
        if isinstance(outcome, bytes):
            return outcome, None
        if isinstance(outcome, tuple):
            body, found = outcome
            return body, trailer_of(found)
        raise outcome

    def stats(self) -> dict[str, Any]:
        return self.batcher.stats.as_dict()

    async def run(self) -> None:
        await self.batcher.run()

    async def aclose(self) -> None:
        self.batcher.close()


def trailer_of(found: Lookups) -> Trailer | None:
    """The answer trailer that tells the gateway what ``found`` holds (``None``: nothing to
    tell); the request is cut to the inference table's limit, as the gateway cuts bodies."""
    request, truncated = found.request, False
    if request is not None and len(request) > MAX_BODY_BYTES:
        text, truncated = clip(request, MAX_BODY_BYTES)
        request = text.encode("utf-8") if text is not None else None
    if not found.missing and request is None:
        return None
    return Trailer(found.missing, request, truncated)


def _settle(answered: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not answered.done():  # done: cancelled (the replica stops, or the connection closed)
        answered.set_result(outcome)
