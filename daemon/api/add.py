"""*API*: ``POST /v1/samples``: samples over the socket, for those who cannot write to the
inbox (members of the socket's group). One raw sample file with ``?label=`` (the types
predict takes), a JSON ``{"samples": [...]}`` or a JSONL body (lines as in an inbox
``.jsonl`` file). Each goes through the inbox's own decoder, label and size checks, queue cap,
deduplication and commit (``Ingestor.checked`` / ``commit_offered``).

Unlike a ``.jsonl`` file in the inbox, a request is all or nothing: one bad sample refuses
it whole (422, naming it), so a client never has to find out which ones were kept.
"""

from __future__ import annotations

import logging

import msgspec
from sqlalchemy import select

from tailord.daemon.api import bodies
from tailord.daemon.api.context import ApiContext
from tailord.daemon.api.params import ApiError, read_query
from tailord.daemon.api.predict import RAW_TYPES
from tailord.daemon.http.wire import Request
from tailord.daemon.inbox.ingest import Ingestor, QueueFull
from tailord.daemon.inbox.layout import Refused
from tailord.storage.models import Sample
from tailord.storage.samples import NewSample
from tailord.trainer.errors import DecodeError
from tailord.trainer.inputs import SAMPLE_SUFFIXES, decode_line, decode_sample
from tailord.trainer.targets import folder_target

logger = logging.getLogger(__name__)

JSONL_TYPES = ("application/x-ndjson", "application/jsonl")
_CHUNK = 500  # SQLite caps the bound parameters of one statement


def add_samples(ctx: ApiContext, request: Request) -> bodies.AddedSamples:
    ingestor = ctx.ingestor
    if ingestor is None:
        raise ApiError(503, "not_ready", "samples are not taken yet; try again in a moment")
    source = f"socket:uid-{request.peer.uid}"
    content_type = request.headers.get("content-type", "application/json")
    content_type = content_type.split(";")[0].strip().lower()
    if content_type == "application/json":
        samples = _lines(ingestor, _json_lines(request.body), source)
    elif content_type in JSONL_TYPES:
        samples = _lines(ingestor, request.body.splitlines(), source)
    else:
        samples = [_raw(ingestor, request, content_type, source)]
    if len(samples) > ingestor.options.batch_lines:
        raise ApiError(
            413,
            "too_many",
            f"{len(samples)} samples in one request; send at most "
            f"{ingestor.options.batch_lines} ([ingest] batch_lines) a request",
        )
    try:
        result = ingestor.commit_offered(samples)
    except QueueFull as exc:
        raise ApiError(503, "queue_full", str(exc)) from exc
    except Exception as exc:  # the database cannot be written (disk full, I/O)
        logger.exception("could not store %d samples sent over the socket", len(samples))
        raise ApiError(
            503, "not_stored", f"the samples could not be stored ({exc}); try again later"
        ) from exc
    return bodies.AddedSamples(
        added=result.added,
        duplicates=result.duplicates,
        relabeled=result.relabeled,
        samples=_stored(ctx, samples),
    )


def _raw(ingestor: Ingestor, request: Request, content_type: str, source: str) -> NewSample:
    suffix = RAW_TYPES.get(content_type)
    if suffix is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"a sample cannot be sent as {content_type}; send one file as "
            f"{', '.join(sorted(RAW_TYPES))} with ?label=, or JSON / JSONL",
        )
    if SAMPLE_SUFFIXES[suffix] != ingestor.input_kind:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"this model takes {ingestor.input_kind} samples, not {content_type}",
        )
    label = read_query(request, bodies.AddQuery).label
    if label is None:
        raise ApiError(400, "bad_parameter", "give the sample's label: ?label=NAME")
    if len(request.body) > ingestor.options.max_file_bytes:
        raise ApiError(
            413, "too_large", "the sample is larger than [ingest] max_file_bytes; send less"
        )
    try:
        if ingestor.task == "regress":
            label = folder_target(label)
        decoded = decode_sample(request.body, suffix, ingestor.input_kind, ingestor.limits)
        return ingestor.checked(label, decoded, source, len(request.body))
    except (DecodeError, Refused) as exc:
        raise ApiError(422, "bad_input", f"the sample {exc}") from exc


def _json_lines(body: bytes) -> list[bytes]:
    try:
        batch = msgspec.json.decode(body, type=bodies.AddRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(
            422,
            "bad_input",
            f'{exc}; send {{"samples": [{{"label": "cat", "vector": [0.1, 0.2]}}, ...]}}',
        ) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({exc})") from exc
    # Each one as the line of an inbox .jsonl file it stands for: the same decoder reads it.
    return [msgspec.json.encode(sample) for sample in batch.samples]


def _lines(ingestor: Ingestor, lines: list[bytes], source: str) -> list[NewSample]:
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(line) > ingestor.options.max_line_bytes:
            raise ApiError(
                413,
                "too_large",
                f"sample {number} is over the {ingestor.options.max_line_bytes}"
                "-byte line cap ([ingest] max_line_bytes); split it",
            )
        try:
            label, decoded = decode_line(
                line, ingestor.input_kind, ingestor.limits, task=ingestor.task
            )
            samples.append(ingestor.checked(label, decoded, f"{source}:{number}", len(line)))
        except (DecodeError, Refused) as exc:
            raise ApiError(422, "bad_input", f"sample {number}: {exc}; nothing was stored") from exc
    if not samples:
        raise ApiError(422, "bad_input", "the batch holds no samples")
    return samples


def _stored(ctx: ApiContext, samples: list[NewSample]) -> list[bodies.AddedSample]:
    """Each sample's row as it is now (a duplicate's is the earlier row), in request order."""
    digests = [s.sha256 for s in samples]
    rows: dict[str, bodies.AddedSample] = {}
    with ctx.db.read() as session:
        for start in range(0, len(digests), _CHUNK):
            found = session.execute(
                select(Sample.id, Sample.sha256, Sample.label, Sample.state).where(
                    Sample.sha256.in_(digests[start : start + _CHUNK])
                )
            )
            for sample_id, sha, label, state in found:
                rows[sha] = bodies.AddedSample(
                    sample_id, sha, label, msgspec.convert(str(state), bodies.SampleState)
                )
    return [rows[sha] for sha in digests if sha in rows]
