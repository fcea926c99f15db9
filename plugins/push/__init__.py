"""Push approval with number matching (docs/push-protocol.md): the factor, its device endpoints
and transports. Entry point: `push = "idp_plugins.push.factor:PushFactor"`."""
