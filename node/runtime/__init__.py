"""The running node: the driver (pump, held frames, timer), its durable writes, the restore at
start, the signing-state file, the dialer, and the service that composes them with the HTTP
servers."""
