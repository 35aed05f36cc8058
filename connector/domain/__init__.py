"""Pure business rules (no Kafka, no Faust, no I/O): the member ledger lives in `ledger`."""
