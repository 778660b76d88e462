"""A replica's handler for a custom model: one MLflow pyfunc model behind the Batcher.

Started as ``python -m modelport.runtime.worker --socket PATH --kind custom --model-path DIR``
(``--kind custom`` is the default). A PREDICT body is parsed on the event loop
(``CustomModel.parse``: bad input is a 400 at once) and queued on the
:class:`~modelport.runtime.batching.Batcher`, whose loop runs the model in one thread and
predicts concurrent DataFrame requests together. A custom model does not stream.
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from typing import Any

from modelport.entities.custom import CustomModel
from modelport.runtime.batching import Batcher, Outcome
from modelport.runtime.replica_server import Handler

__all__ = ["CustomHandler"]


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
        inp = self.model.parse(payload)
        answered: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.batcher.submit(inp, partial(_settle, answered))
        outcome = await answered
        if isinstance(outcome, bytes):
            return outcome
        raise outcome

    def stats(self) -> dict[str, Any]:
        return self.batcher.stats.as_dict()

    async def run(self) -> None:
        await self.batcher.run()

    async def aclose(self) -> None:
        self.batcher.close()


def _settle(answered: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not answered.done():  # done: cancelled (the replica stops, or the connection closed)
        answered.set_result(outcome)
