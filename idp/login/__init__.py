"""The login pipeline: a server-side transaction driven through guarded states."""
