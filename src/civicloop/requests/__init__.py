"""Service requests (诉求), work orders (工单), their state machine, deadlines, callbacks, ledger."""
