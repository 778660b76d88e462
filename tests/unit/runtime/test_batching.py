"""The batcher: which queued requests are predicted together, in which order, and fallbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from modelport.entities.custom import FrameRows, ModelInput
from modelport.errors import InvalidParameterValue, ModelportError
from modelport.runtime.batching import Batcher, BatchingMode, Outcome, split_output


class FakeModel:
    """Predicts ``10 * x`` per row; records each call; a value of -1 is a bad row."""

    def __init__(self, batch_capable: bool = True, short_output: bool = False) -> None:
        self.batch_capable = batch_capable
        self.short_output = short_output
        self.calls: list[tuple[str, list[Any]]] = []

    def predict(self, inp: ModelInput) -> bytes:
        values = inp.frame.rows if inp.frame is not None else inp.data
        self.calls.append(("alone", [v[0] for v in values]))
        if any(v[0] == -1 for v in values):
            raise InvalidParameterValue("bad row")
        return orjson.dumps([v[0] * 10 for v in values])

    def combine(self, inputs: Sequence[ModelInput]) -> list[list[Any]]:
        return [row for inp in inputs if inp.frame is not None for row in inp.frame.rows]

    def run(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        self.calls.append(("together", [row[0] for row in data]))
        if any(row[0] == -1 for row in data):
            raise InvalidParameterValue("bad row")
        out = [row[0] * 10 for row in data]
        return out[:-1] if self.short_output else out

    def render(self, output: Any, wrap: bool = True) -> bytes:
        return orjson.dumps(output)

    def lookups(self, inputs: Sequence[ModelInput]) -> None:
        return None  # looks nothing up


def frame(*values: int, key: Hashable | None = "k") -> ModelInput:
    rows = [[v] for v in values]
    return ModelInput("dataframe_split", frame=FrameRows(("x",), rows, "split"), key=key, rows=len(rows))


async def _serve(
    batcher: Batcher, inputs: list[ModelInput], late: list[tuple[float, ModelInput]] | None = None
) -> list[Outcome]:
    loop = asyncio.get_running_loop()
    total = len(inputs) + len(late or [])
    results: dict[int, Outcome] = {}
    done = loop.create_future()

    def reply_for(i: int) -> Any:
        def reply(outcome: Outcome) -> None:
            results[i] = outcome
            if len(results) == total and not done.done():
                done.set_result(None)

        return reply

    for i, inp in enumerate(inputs):
        batcher.submit(inp, reply_for(i))
    for j, (delay, inp) in enumerate(late or []):
        loop.call_later(delay, batcher.submit, inp, reply_for(len(inputs) + j))
    task = loop.create_task(batcher.run())
    try:
        await asyncio.wait_for(done, 10)
    finally:
        task.cancel()
        batcher.close()
    return [results[i] for i in range(total)]


def serve(
    model: FakeModel,
    inputs: list[ModelInput],
    mode: BatchingMode = "auto",
    max_batch_size: int = 64,
    max_batch_wait: float = 0.002,
    late: list[tuple[float, ModelInput]] | None = None,
) -> tuple[Batcher, list[Outcome]]:
    batcher = Batcher(model, mode, max_batch_size, max_batch_wait)
    return batcher, asyncio.run(_serve(batcher, inputs, late))


def test_queued_frames_with_the_same_key_are_predicted_together() -> None:
    model = FakeModel()
    batcher, outcomes = serve(model, [frame(1), frame(2, 3), frame(4)])
    assert model.calls == [("together", [1, 2, 3, 4])]
    assert outcomes == [b"[10]", b"[20,30]", b"[40]"]
    assert batcher.stats.as_dict() == {
        "batches": 1,
        "batched_rows": 4,
        "max_batch_seen": 3,
    }


def test_a_batch_holds_at_most_max_batch_size_rows() -> None:
    model = FakeModel()
    _, outcomes = serve(model, [frame(1), frame(2), frame(3), frame(4), frame(5)], max_batch_size=3)
    assert model.calls == [("together", [1, 2, 3]), ("together", [4, 5])]
    assert outcomes == [b"[10]", b"[20]", b"[30]", b"[40]", b"[50]"]


def test_a_request_larger_than_a_batch_is_predicted_alone() -> None:
    model = FakeModel()
    serve(model, [frame(1, 2, 3), frame(4)], max_batch_size=2)
    assert model.calls == [("alone", [1, 2, 3]), ("alone", [4])]


def test_requests_without_key_are_predicted_alone_in_arrival_order() -> None:
    model = FakeModel()
    serve(model, [frame(1, key=None), frame(2, key=None), frame(3, key=None)])
    assert model.calls == [("alone", [1]), ("alone", [2]), ("alone", [3])]


def test_different_keys_are_not_mixed_and_the_oldest_goes_first() -> None:
    model = FakeModel()
    inputs = [frame(1, key=None), frame(2, key="a"), frame(3, key="b"), frame(4, key="a"), frame(5, key="b")]
    _, outcomes = serve(model, inputs)
    assert model.calls == [("alone", [1]), ("together", [2, 4]), ("together", [3, 5])]
    assert outcomes == [b"[10]", b"[20]", b"[30]", b"[40]", b"[50]"]


@pytest.mark.parametrize(("mode", "capable"), [("off", True), ("auto", False)])
def test_no_batching_when_off_or_not_capable(mode: BatchingMode, capable: bool) -> None:
    model = FakeModel(batch_capable=capable)
    batcher, _ = serve(model, [frame(1), frame(2)], mode=mode)
    assert model.calls == [("alone", [1]), ("alone", [2])]
    assert (batcher.stats.batches, batcher.stats.max_batch_seen) == (0, 1)


def test_on_batches_a_model_that_is_not_known_capable() -> None:
    model = FakeModel(batch_capable=False)
    serve(model, [frame(1), frame(2)], mode="on")
    assert model.calls == [("together", [1, 2])]


def test_a_bad_request_fails_alone_and_the_others_are_answered() -> None:
    model = FakeModel()
    batcher, outcomes = serve(model, [frame(1), frame(-1), frame(3)])
    assert model.calls == [("together", [1, -1, 3]), ("alone", [1]), ("alone", [-1]), ("alone", [3])]
    assert outcomes[0] == b"[10]" and outcomes[2] == b"[30]"
    assert isinstance(outcomes[1], InvalidParameterValue)
    assert batcher.stats.batches == 0


def test_output_of_the_wrong_length_falls_back_to_predicting_alone() -> None:
    model = FakeModel(short_output=True)
    _, outcomes = serve(model, [frame(1), frame(2)])
    assert model.calls == [("together", [1, 2]), ("alone", [1]), ("alone", [2])]
    assert outcomes == [b"[10]", b"[20]"]


def test_a_bug_in_predict_is_an_internal_error() -> None:
    model = FakeModel()
    inp = ModelInput("instances", data=None)  # FakeModel.predict fails iterating None
    _, outcomes = serve(model, [inp])
    assert isinstance(outcomes[0], ModelportError)
    assert outcomes[0].error_code == "INTERNAL_ERROR"
    assert outcomes[0].message.startswith("TypeError: ")


def test_a_lone_request_does_not_wait_for_the_batch_timer() -> None:
    started = time.monotonic()
    _, outcomes = serve(FakeModel(), [frame(1)], max_batch_wait=5.0)
    assert outcomes == [b"[10]"]
    assert time.monotonic() - started < 2.0


def test_with_requests_waiting_the_batch_waits_to_fill() -> None:
    model = FakeModel()
    started = time.monotonic()
    _, outcomes = serve(
        model, [frame(1), frame(2)], max_batch_size=3, max_batch_wait=3.0, late=[(0.05, frame(3))]
    )
    assert model.calls == [("together", [1, 2, 3])]
    assert outcomes == [b"[10]", b"[20]", b"[30]"]
    assert time.monotonic() - started < 2.0  # full: no need to wait out the timer


def _fast(model: FakeModel, inputs: list[ModelInput], **kwargs: Any) -> list[Outcome]:
    """Serve with a 5 s batch timer, failing if the batcher waited it out."""
    started = time.monotonic()
    _, outcomes = serve(model, inputs, max_batch_wait=5.0, **kwargs)
    assert time.monotonic() - started < 2.0, "the batch waited for its timer"
    return outcomes


def test_no_wait_when_a_queued_request_does_not_fit_the_batch() -> None:
    model = FakeModel()
    outcomes = _fast(model, [frame(1, 2), frame(3, 4)], max_batch_size=3)
    assert model.calls == [("alone", [1, 2]), ("alone", [3, 4])]
    assert outcomes == [b"[10,20]", b"[30,40]"]


def test_a_request_that_does_not_fit_ends_the_wait() -> None:
    model = FakeModel()
    _fast(model, [frame(1), frame(2)], max_batch_size=4, late=[(0.05, frame(3)), (0.1, frame(4, 5))])
    assert model.calls == [("together", [1, 2, 3]), ("alone", [4, 5])]


def test_other_keys_queued_behind_do_not_stop_the_wait() -> None:
    model = FakeModel()
    inputs = [frame(1, key="a"), frame(2, key="b"), frame(3, 4, 5, key=None)]
    serve(model, inputs, max_batch_wait=0.5, late=[(0.05, frame(6, key="a"))])
    assert model.calls == [("together", [1, 6]), ("alone", [2]), ("alone", [3, 4, 5])]


def test_stopping_answers_the_running_and_the_queued_requests() -> None:
    class Slow(FakeModel):
        def predict(self, inp: ModelInput) -> bytes:
            time.sleep(0.3)
            return super().predict(inp)

    async def go() -> list[Outcome]:
        batcher = Batcher(Slow(), "off")
        outcomes: list[Outcome] = []
        batcher.submit(frame(1), outcomes.append)
        batcher.submit(frame(2), outcomes.append)
        task = asyncio.get_running_loop().create_task(batcher.run())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        batcher.close()
        return outcomes

    outcomes = asyncio.run(go())
    assert [getattr(o, "error_code", o) for o in outcomes] == ["TEMPORARILY_UNAVAILABLE"] * 2


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (np.array([1, 2, 3]), [[1], [2, 3]]),
        (np.array([[1, 1], [2, 2], [3, 3]]), [[[1, 1]], [[2, 2], [3, 3]]]),
        ([1, 2, 3], [[1], [2, 3]]),
        (pd.Series([1, 2, 3]), [[1], [2, 3]]),
        (pd.DataFrame({"p": [1, 2, 3]}), [[[1]], [[2], [3]]]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_split_output_by_row_counts(output: Any, expected: list[Any]) -> None:
    parts = split_output(output, [1, 2])
    assert parts is not None
    assert [np.asarray(p).tolist() for p in parts] == expected


@pytest.mark.parametrize(
    "output", [np.array([1, 2]), [1, 2, 3, 4], {"a": [1, 2, 3]}, "abc", np.float64(1.0), np.array(3)]
)
def test_split_output_refuses_what_it_cannot_split(output: Any) -> None:
    assert split_output(output, [1, 2]) is None


def test_real_model_answers_the_same_batched_or_alone(tmp_path: Path) -> None:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from modelport.entities.custom import CustomModel

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.random((40, 3)), columns=["a", "b", "c"])
    clf = LogisticRegression().fit(x, (x["a"] + x["b"] > 1).astype(int))
    signature = mlflow.models.infer_signature(x, clf.predict(x))
    mlflow.sklearn.save_model(
        clf, str(tmp_path / "m"), signature=signature, pip_requirements=["scikit-learn"]
    )
    model = CustomModel.load(str(tmp_path / "m"))
    bodies = [
        orjson.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}})
        for rows in x.to_numpy()[:12].reshape(6, 2, 3).tolist()
    ]
    batcher = Batcher(model, "auto")
    outcomes = asyncio.run(_serve(batcher, [model.parse(b) for b in bodies]))
    assert batcher.stats.batches == 1 and batcher.stats.max_batch_seen == 6
    assert outcomes == [model.predict(model.parse(b)) for b in bodies]
