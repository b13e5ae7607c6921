"""``tailorctl update --wait``: a progress bar drawn from the update's events."""

from __future__ import annotations

import time
from collections.abc import Iterable

from tailord.daemon.api import bodies
from tailord.daemon.ctl.client import Client
from tailord.daemon.ctl.show import err


def follow(
    client: Client, stream: Iterable[bodies.Event], update_id: int, deadline: float
) -> bodies.UpdateInfo | None:
    """Show a progress bar from the update's events until it finishes; its final state, or
    None when ``deadline`` (a ``time.monotonic()``) passes first."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    info = client.update_info(update_id)
    if info.state not in bodies.ACTIVE_UPDATE_STATES:
        return info
    columns = (
        TextColumn("[bold]update #{task.fields[update]}[/]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),  # our own words and numbers only: no markup to escape
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err(), transient=True) as progress:
        task = progress.add_task("waiting to start", total=None, update=update_id)
        for event in stream:
            data = event.data
            if data.get("update") != update_id:
                pass
            elif event.type == "update.began":
                progress.update(task, total=_number(data.get("epochs")), description="starting")
            elif event.type == "update.progress":
                loss = _number(data.get("loss"))
                progress.update(
                    task,
                    completed=_number(data.get("epoch")) or 0,
                    description=f"epoch {_number(data.get('epoch'))} "
                    f"batch {_number(data.get('batch'))}"
                    + ("" if loss is None else f" loss {loss:.4f}"),
                )
            elif event.type == "update.judged":
                verdict = "publishing" if data.get("promote") else "rejected by the gate"
                progress.update(task, description=verdict)
            elif event.type == "update.finished":
                return client.update_info(update_id)
            if time.monotonic() > deadline:
                return None
    return client.update_info(update_id)  # the stream ended: the daemon is stopping


def _number(value: object) -> float | None:
    """An event's number (events carry plain JSON), or None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None
