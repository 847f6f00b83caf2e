"""The worker of bench/pipeline_floor.py: bookingflow's broker, built as `jobs` builds it (Redis,
Dramatiq's Prometheus middleware, the work context), with one actor that does nothing. What a
message costs the Procfile's worker before any of bookingflow's own work."""

import os

import dramatiq

# As models.bootstrap.prepare_metrics does for `jobs`: the multiprocess directory must exist before
# the first metric is made, which importing the broker does.
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from bookingflow import broker as broker_module  # noqa: E402

broker = broker_module.install(os.environ["BROKER_URL"])


@dramatiq.actor(actor_name="nothing", queue_name=broker_module.QUEUE)
def nothing(index: int) -> None:
    pass
