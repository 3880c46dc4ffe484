"""A pytest plugin for ci/gpu.sh: SIGTERM (what ``timeout`` sends at a step's limit) ends
the session as Ctrl-C does, so the summary and the junit XML of the tests run so far are
still written."""

import signal


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}: the step's time limit")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _interrupt)
