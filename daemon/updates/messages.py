"""The update worker's contract: the job it gets and the messages it sends, as typed structs.

Daemon → worker: one :class:`WorkerJob`. Worker → daemon: :class:`Ready` (a prewarmed worker
has loaded torch), any number of :class:`Progress`, then one :class:`Result` or
:class:`Failure`, or :class:`Stopped` when SIGTERM stopped its training (stopping.py). The
messages are one tagged union, :data:`Message` (tag field ``type``).

On the pipe every message is ``msgspec.msgpack`` bytes (``send_bytes``/``recv_bytes``), not
a pickle: decoding with the union type checks each message against its struct, so a drift
between the two sides fails at the pipe with a message naming the field, not later as a
``KeyError`` on the publish path; and no pickle crosses the process boundary. The job's
spec and parameters are the trainer's own types, encoded by their fields and rebuilt (and so
validated again) on the worker's side.
"""

from __future__ import annotations

import logging
from multiprocessing.connection import Connection
from pathlib import Path, PurePath

import msgspec

from tailord.daemon.api import bodies
from tailord.trainer.spec import GateParams, ModelSpec, UpdateParams


class WorkerJob(msgspec.Struct, frozen=True, kw_only=True):
    """One update for a worker: where its data is, what to build, how to train and judge."""

    update_id: int
    database: Path
    data_dir: Path
    staging: Path  # where the candidate goes
    base_version: int  # the version it starts from
    up_to_id: int  # the highest queued sample id it learns (0: none)
    relearn: bool = False  # from version 0's head, relearning every learned sample (selection.py)
    spec: ModelSpec
    params: UpdateParams
    gate: GateParams = msgspec.field(default_factory=GateParams)
    threads: int = 1
    nice: int = 10
    log_level: int = logging.INFO
    checkpoints: Path | None = None  # where checkpoints go (survive restarts)


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """A prewarmed worker has loaded torch and waits for its job."""


class Progress(msgspec.Struct, frozen=True, tag="progress"):
    """A progress event of the running update."""

    event: bodies.Progress


class Result(msgspec.Struct, frozen=True, tag="result", kw_only=True):
    """The update is done: the candidate is judged and, if promoted, written into staging."""

    sample_ids: list[int]  # the queued samples it learned (to mark learned on publish)
    new_samples: int
    labels: list[str]  # the candidate's labels, in index order
    sample_count: int  # samples in the candidate (k-NN: rows of its memory)
    spec: ModelSpec
    metrics: bodies.UpdateMetrics
    gate: bodies.Gate
    promote: bool  # False: the gate rejected it, and nothing was written


class Failure(msgspec.Struct, frozen=True, tag="failure"):
    """The update failed in the worker (or the worker died: then ``traceback`` is empty)."""

    message: str  # "ExceptionType: text", for the update's row and the log
    traceback: str = ""


class Stopped(msgspec.Struct, frozen=True, tag="stopped"):
    """SIGTERM stopped the training between two mini-batches; the checkpoint is written."""

    metrics: bodies.UpdateMetrics  # the cost up to the stop


Message = Ready | Progress | Result | Failure | Stopped


def _enc_hook(obj: object) -> object:
    if isinstance(obj, PurePath):
        return str(obj)
    raise NotImplementedError(f"cannot send {type(obj).__name__} to or from the worker")


def _dec_hook(type_: type, obj: object) -> object:
    if type_ is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(f"cannot receive {type_.__name__} from the pipe")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_messages: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message, dec_hook=_dec_hook)
_jobs = msgspec.msgpack.Decoder(WorkerJob, dec_hook=_dec_hook)


def send(conn: Connection, item: Message | WorkerJob) -> None:
    conn.send_bytes(_encoder.encode(item))


def receive(conn: Connection) -> Message:
    """The worker's next message; raises ``EOFError`` when it is gone."""
    message: Message = _messages.decode(conn.recv_bytes())
    return message


def receive_job(conn: Connection) -> WorkerJob:
    return _jobs.decode(conn.recv_bytes())
