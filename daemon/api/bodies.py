"""Every body the socket API sends or takes, defined once as a ``msgspec.Struct``.

The handlers encode these, the OpenAPI document's schemas are generated from them, and the
``tailorctl`` client decodes into them: one definition, so the three cannot drift. This
module imports only msgspec and the standard library, so the client stays free of torch and
SQLAlchemy. Field order is the wire's key order.

``UNSET`` marks a key the wire leaves out when it has nothing to say (an old row written
before the key existed); ``None`` is sent as ``null``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# Shared constraints: they become ``minimum`` / ``maximum`` in the OpenAPI document.
Count = Annotated[int, Meta(ge=0)]
# A version number (0 is the base version); SQLite integers are 64-bit, a longer one is none.
Number = Annotated[int, Meta(ge=0, lt=10**18)]
Id = Annotated[int, Meta(ge=1, le=2**62)]  # a row id (SQLite integers: 64-bit)
Seconds = Annotated[float, Meta(description="Unix seconds")]
Share = Annotated[float, Meta(ge=0, le=1)]

UpdateState = Literal[
    "pending", "running", "succeeded", "failed", "interrupted", "rejected", "cancelled", "expired"
]
SampleState = Literal["queued", "learned", "rejected"]
UpdateFrom = Literal["current", "base"]  # which version an update's head starts from
# The database stores these as the enums of ``tailord.storage.states`` (kept out of here: the
# client must not import storage); tests/storage/test_states.py pins both to the same values.
ACTIVE_UPDATE_STATES: tuple[UpdateState, ...] = ("pending", "running")
SAMPLE_STATES: tuple[SampleState, ...] = ("queued", "learned", "rejected")

# ``{state: {label: n}}``
Counts = Annotated[
    dict[str, dict[str, Count]], Meta(description="samples as {state: {label: count}}")
]
# A JSON object the API passes through as stored (a manifest): its keys belong to the
# versions' own format (docs/versions.md), not to the API.
JsonValue = Annotated[object, Meta(extra_json_schema={"description": "any JSON value"})]
JsonObject = dict[str, JsonValue]


class ErrorDetail(Struct, frozen=True):
    code: Annotated[str, Meta(description="stable, for programs")]
    message: Annotated[str, Meta(description="for people: what to do")]


class ErrorBody(Struct, frozen=True):
    """Every error: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class CurrentVersion(Struct, frozen=True):
    """``GET /v1/version``: the version being served."""

    version: Number
    parent: int | None
    created_at: float | None
    labels: list[str]
    sample_count: Count


ProgressKind = Literal["began", "batch", "epoch"]


class Progress(Struct, frozen=True):
    """One progress event of the trainer (``tailord.trainer.fit.ProgressEvent``): the worker
    sends it over its pipe, and the running update's latest is ``update.progress``."""

    kind: ProgressKind
    epoch: int  # 1-based; for "began", the epochs already done (resumed from a checkpoint)
    # 1-based within the epoch; for "epoch", the number of batches it had; for "began",
    # the batches of the next epoch already done (resumed from a checkpoint taken at a stop)
    batch: int
    loss: float | None  # batch loss, or the epoch's mean loss per sample; None for k-NN
    samples_per_second: float | None  # since "began"
    accuracy: float | None = None  # "epoch" only, and only for classify heads


class CurvePoint(Struct, frozen=True):
    """One epoch of the loss curve (``tailorctl update --show`` plots it); an epoch without a
    loss (k-NN) makes no point."""

    epoch: int
    loss: float
    accuracy: float | None


class UpdateMetrics(Struct, frozen=True):
    """An update's timings and learning curve, in its row and its version's manifest; empty
    (``{}``) for one that failed before training and for a version no update made."""

    seconds: float | UnsetType = UNSET  # training time
    encode_seconds: float | UnsetType | None = UNSET  # backbone features (cache misses) time
    replayed: int | UnsetType = UNSET  # earlier samples mixed in
    curve: list[CurvePoint] | UnsetType = UNSET  # one point per epoch; [] for a k-NN head
    # The worker's CPU time (all its threads) training, and for the whole job (reading,
    # encoding, training, gate); mini-batches this update trained (a resumed one: only its
    # own). An expired or interrupted update's row has them up to its stop.
    cpu_seconds: float | UnsetType = UNSET
    worker_cpu_seconds: float | UnsetType = UNSET
    batches: int | UnsetType = UNSET


class Gate(Struct, frozen=True):
    """The gate's decision on a candidate and its figures (docs/versions.md).

    ``metric`` and ``enabled`` are unset in rows written before they existed: the wire
    leaves them out there, as it always did.
    """

    promote: bool
    reason: str
    holdout_samples: int
    holdout_candidate: float | None
    holdout_current: float | None
    canary_samples: int
    canary_candidate: float | None
    canary_current: float | None
    metric: Literal["accuracy", "mse"] | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


_Share = Annotated[float, Meta(ge=0.0, lt=1.0)]  # momentum and Adam's betas


class UpdateRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/update``'s body (optional): ``[update]`` parameters for this update only,
    and ``k`` for a k-NN head; a key left out keeps the configured value.

    The bounds are ``[update]``'s own (docs/configuration.md), declared again here so that the
    OpenAPI document states them (a test pins them equal to ``UpdateParams``'s): a value
    outside is a 422 naming the key.
    In an update's description every key is set: the parameters it ran with.
    """

    epochs: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    learning_rate: Annotated[float, Meta(gt=0.0)] | UnsetType = UNSET
    batch_size: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    seed: Annotated[int, Meta(ge=0, le=2**63 - 1)] | UnsetType = UNSET
    replay: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    optimizer: Literal["adam", "sgd"] | UnsetType = UNSET
    momentum: _Share | UnsetType = UNSET
    beta1: _Share | UnsetType = UNSET
    beta2: _Share | UnsetType = UNSET
    eps: Annotated[float, Meta(gt=0.0)] | UnsetType = UNSET
    weight_decay: Annotated[float, Meta(ge=0.0)] | UnsetType = UNSET
    shuffle: bool | UnsetType = UNSET
    device: Literal["auto", "cpu", "cuda"] | UnsetType = UNSET
    k: Annotated[int, Meta(ge=1, description="neighbours that vote (k-NN heads)")] | UnsetType = (
        UNSET
    )
    from_: (
        Annotated[
            UpdateFrom,
            Meta(
                description="current (the default): learn the queue on top of the current "
                "version; base: retrain the head from version 0 on every learned sample plus "
                "the queue (what a changed [model] needs)"
            ),
        ]
        | UnsetType
    ) = msgspec.field(default=UNSET, name="from")


class UpdateInfo(Struct, frozen=True):
    """``POST /v1/update``, ``GET /v1/updates/{id}``: one update."""

    id: Id
    state: UpdateState
    reason: str
    started_at: Annotated[float, Meta(description="Unix seconds; requested, if pending")]
    finished_at: float | None
    base_version: Number
    version: Annotated[int | None, Meta(description="the version it published")]
    samples: Count
    error: str | None
    metrics: UpdateMetrics
    gate: Gate | None
    progress: Annotated[Progress | None, Meta(description="while running")]
    from_: Annotated[
        UpdateFrom, Meta(description="base: relearned every learned sample from version 0")
    ] = msgspec.field(default="current", name="from")
    resumed_from: Annotated[
        int | None, Meta(description="the expired update it resumed from its checkpoint")
    ] = None
    params: (
        Annotated[UpdateRequest, Meta(description="every parameter it runs with")] | UnsetType
    ) = UNSET  # left out for rows from before they were kept

    @property
    def active(self) -> bool:
        """Pending or running: not ended yet."""
        return self.state in ACTIVE_UPDATE_STATES


class RunningUpdate(Struct, frozen=True):
    id: Id
    progress: Progress | None


class LoadError(Struct, frozen=True):
    """The last version that could not be loaded (the previous one kept serving)."""

    version: Number
    message: str
    at: float


class IngestInfo(Struct, frozen=True):
    ingested: Count
    duplicates: Count
    relabeled: Count
    rejected: Count
    waiting: Count
    error: str | None
    backpressure: str | None
    last_commit_at: float | None


ConditionName = Literal["quiet", "min_queued", "idle", "power", "window", "schedule", "backoff"]


class Condition(Struct, frozen=True):
    """One configured policy condition (docs/policy.md) and whether it holds now."""

    name: ConditionName
    ok: bool
    detail: str


class Status(Struct, frozen=True):
    """``GET /v1/status``."""

    state: Literal["idle", "updating"]
    version: int | None
    queued: Count
    queue: Annotated[dict[str, Count], Meta(description="queued samples by label")]
    samples: Counts
    policy: Annotated[str, Meta(description="why an update runs or waits")]
    update: RunningUpdate | None
    last_update: UpdateInfo | None
    load_error: LoadError | None
    ingest: IngestInfo
    spec_change: Annotated[
        str | None,
        Meta(description="[model] differs from the current version's; says what retrains it"),
    ] = None
    conditions: Annotated[
        list[Condition], Meta(description="the policy's conditions, one per configured one")
    ] = msgspec.field(default_factory=list)


class VersionInfo(Struct, frozen=True):
    """One entry of ``GET /v1/versions``."""

    number: Number
    parent: int | None
    created_at: float
    sample_count: Count
    current: bool
    labels: list[str]
    metrics: UpdateMetrics
    update: int | None
    pinned: Annotated[bool, Meta(description="kept whatever [versions] keep says")]
    removed: Annotated[bool, Meta(description="its folder was removed; the row stays")]


class VersionList(Struct, frozen=True):
    """``GET /v1/versions``: every version ever published, oldest first."""

    versions: list[VersionInfo]


class VersionDetail(VersionInfo, frozen=True):
    """``GET /v1/versions/{n}``: one version and its manifest.json."""

    manifest: Annotated[JsonObject, Meta(description="manifest.json")]


class Sample(Struct, frozen=True):
    """One sample, without its payload."""

    id: Id
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
    label: str
    kind: str
    source: Annotated[str, Meta(description="its name in the inbox")]
    size: Count
    state: SampleState
    learned_in: int | None
    created_at: float
    previous_label: str | None = None  # the label it had before it was dropped again
    relabeled_at: float | None = None


class SamplePage(Struct, frozen=True):
    """``GET /v1/samples``: counts and one page of samples by id."""

    counts: Counts
    samples: list[Sample]
    next_after: Annotated[
        int | None,
        Meta(description="pass as ?after= for the next page; null on the last page"),
    ]


class AddRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/samples`` as JSON: samples, each an object as a line of an inbox ``.jsonl``
    file is (``label`` or, for a regress model, ``target``, and one of ``vector``, ``text``,
    ``image``); checked the same way."""

    samples: Annotated[list[JsonObject], Meta(min_length=1)]


class AddedSample(Struct, frozen=True):
    """One sample as it is stored now: a duplicate keeps its id (and its state: a sample
    the gate rejected stays rejected until requeued)."""

    id: Id
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
    label: str
    state: SampleState


class AddedSamples(Struct, frozen=True):
    """``POST /v1/samples``: what became of each sample sent, in order."""

    added: Annotated[Count, Meta(description="new samples")]
    duplicates: Annotated[Count, Meta(description="stored already under the same label")]
    relabeled: Annotated[Count, Meta(description="stored already, now under this label")]
    samples: list[AddedSample]


class AddQuery(Struct, frozen=True):
    label: Annotated[
        str | None,
        Meta(description="the label (a regress model: the target) of a raw sample body"),
    ] = None


class RequeueRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/samples/requeue``: the samples to queue again, matching every key given
    (at least one): ids, a label, a state (``{"state": "rejected"}``: all the gate refused)."""

    ids: Annotated[list[Id], Meta(min_length=1, max_length=100_000)] | UnsetType = UNSET
    label: str | UnsetType = UNSET
    state: SampleState | UnsetType = UNSET


class RequeueResult(Struct, frozen=True):
    """How many samples went back in the queue (with their current label)."""

    requeued: Annotated[Count, Meta(description="learned or rejected, now queued")]
    already_queued: Annotated[Count, Meta(description="matched, but queued already")]


class LabelScore(Struct, frozen=True, forbid_unknown_fields=True):
    label: str
    score: Share


class Prediction(Struct, frozen=True, forbid_unknown_fields=True):
    """A classify model's answer: a label and its score; with ``?top=k`` (k > 1) also the k
    best, best first. A regress model (``[model] task = "regress"``) answers ``value`` only.
    """

    label: str | UnsetType = UNSET
    score: Share | UnsetType = UNSET
    top: list[LabelScore] | UnsetType = UNSET
    value: float | UnsetType = UNSET


class Predictions(Struct, frozen=True):
    """``POST /v1/predict``: one prediction per input, in order."""

    version: Number
    # One shape or the other, never a mix: said in the schema, as the struct cannot.
    predictions: list[
        Annotated[
            Prediction,
            Meta(
                extra_json_schema={
                    "oneOf": [
                        {"required": ["label", "score"], "not": {"required": ["value"]}},
                        {"required": ["value"], "maxProperties": 1},
                    ]
                }
            ),
        ]
    ]


class PredictRequest(Struct, frozen=True):
    """``POST /v1/predict`` as JSON: vectors as lists of numbers; for text and image models,
    strings or ``{"image": "<base64>"}``."""

    inputs: Annotated[list[list[float] | str | dict[str, str]], Meta(min_length=1, max_length=4096)]


class VersionRequest(Struct, frozen=True):
    """``POST /v1/pin``, ``/v1/unpin``: the version to act on."""

    version: Number


class RollbackRequest(Struct, frozen=True):
    """``POST /v1/rollback``: the version to make current; none means the current's parent."""

    version: Number | None = None


class RollbackResult(Struct, frozen=True):
    version: Number
    previous: int | None
    changed: bool


class PinResult(Struct, frozen=True):
    version: Number
    pinned: bool


class ImportResult(Struct, frozen=True):
    version: Number
    parent: int | None


# -- query parameters: one struct per route that takes any ----------------------------------


Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$", description="a sample's sha256, hex")]
SampleId = Annotated[int, Meta(ge=1, le=2**62)]  # a sample's row id (SQLite integers: 64-bit)


class ForgetRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/forget``: the samples to forget, by id, by sha256 or by label (any mix)."""

    ids: Annotated[list[SampleId], Meta(max_length=100_000)] = []
    sha256: Annotated[list[Sha256], Meta(max_length=100_000)] = []
    label: Annotated[str, Meta(min_length=1, description="every sample with it")] | None = None
    force: Annotated[bool, Meta(description="also remove pinned versions that learned them")] = (
        False
    )


class ForgetResult(Struct, frozen=True):
    """What ``POST /v1/forget`` removed, and how long it took."""

    samples: Annotated[list[SampleId], Meta(description="the ids of the samples forgotten")]
    learned: Annotated[Count, Meta(description="of them, how many a version had learned")]
    versions_removed: Annotated[list[Number], Meta(description="versions that had learned them")]
    version: Annotated[Number | None, Meta(description="current now, built without them")]
    seconds: Annotated[float, Meta(ge=0, description="wall time, retrain included")]


class UpdateQuery(Struct, frozen=True):
    wait: Annotated[bool, Meta(description="block until the update has ended")] = False
    defer: Annotated[
        bool, Meta(description="queue the request until the policy's conditions hold")
    ] = False
    timeout: Annotated[
        float,
        Meta(ge=0, le=3600, description="seconds to wait at most; still running then: 202"),
    ] = 600.0


class SamplesQuery(Struct, frozen=True):
    state: Annotated[SampleState | None, Meta(description="only samples in this state")] = None
    label: Annotated[str | None, Meta(description="only samples with this label")] = None
    after: Annotated[int, Meta(ge=0, le=2**62, description="ids after this one")] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000, description="samples on a page")] = 100


class PredictQuery(Struct, frozen=True):
    top: Annotated[
        int,
        Meta(
            ge=1,
            le=100,
            description="also answer the k best labels of each input, best first (classify only)",
        ),
    ] = 1


class Event(Struct, frozen=True):
    """One server-sent event's ``data:`` line on ``GET /v1/events``; ``data`` is the payload
    of its ``type`` (the structs of ``tailord.daemon.events``)."""

    id: int
    type: str
    time: float
    data: JsonObject


encoder = msgspec.json.Encoder()


def encode(body: Struct) -> bytes:
    """A body as the wire carries it: compact JSON and a newline."""
    return encoder.encode(body) + b"\n"
