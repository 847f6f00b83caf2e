"""The command line (`bookingflow ...`): operator commands, the embedded dev service and the demo."""
