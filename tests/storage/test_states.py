"""The database's states and the wire's are one set: issue 11 found ``rejected`` missing from
the API's enums while the database had it. The enums live in storage (no daemon import) and
the Literals in the API bodies (no storage import), so this test is what keeps them equal."""

from __future__ import annotations

from typing import get_args

import msgspec

from tailord.daemon.api import bodies
from tailord.daemon.updates.rows import WIRE_STATE
from tailord.storage.states import SampleState, UpdateState


def test_update_states_are_the_same_on_the_wire_and_in_the_database() -> None:
    assert list(get_args(bodies.UpdateState)) == [state.value for state in UpdateState]


def test_sample_states_are_the_same_on_the_wire_and_in_the_database() -> None:
    assert list(get_args(bodies.SampleState)) == [state.value for state in SampleState]
    assert list(bodies.SAMPLE_STATES) == [state.value for state in SampleState]


def test_active_states_agree() -> None:
    assert set(bodies.ACTIVE_UPDATE_STATES) == {s.value for s in UpdateState if s.active}


def test_every_stored_update_state_has_its_wire_state() -> None:
    assert {stored.value: wire for stored, wire in WIRE_STATE.items()} == {
        s.value: s.value for s in UpdateState
    }


def test_the_api_schema_offers_every_state() -> None:
    _, components = msgspec.json.schema_components([bodies.UpdateInfo, bodies.Sample])
    update_states = components["UpdateInfo"]["properties"]["state"]["enum"]
    sample_states = components["Sample"]["properties"]["state"]["enum"]
    assert set(update_states) == {s.value for s in UpdateState}
    assert set(sample_states) == {s.value for s in SampleState}
