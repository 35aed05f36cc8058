"""loyalty-connector: loyalty webhooks into Kafka as canonical Avro events and live balances."""

__version__ = "0.3.0"
