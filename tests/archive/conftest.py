from tests.archive._brokers import mosquitto_fixture, nats_fixture  # noqa: F401
