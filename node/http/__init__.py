"""The node's HTTP side: shared errors, the public API, the admin interface, the event stream."""
