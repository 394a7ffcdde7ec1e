import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.emulator.test_api_sync import _SyncMachine, _WindowedSyncMachine


@pytest.mark.parametrize("machine", [_SyncMachine, _WindowedSyncMachine])
def test_heavy(emulator, service, machine):
    machine.server = emulator
    machine.service = service
    run_state_machine_as_test(machine, settings=settings(
        max_examples=400, stateful_step_count=40, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
