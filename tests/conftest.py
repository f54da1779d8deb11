"""Session-wide fixtures: real services and a real engine (see tests/fixtures/)."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.engine"]
