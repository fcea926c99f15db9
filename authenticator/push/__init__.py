"""The app side of push approval (docs/push-protocol.md, v1): the device key, the HTTP client,
activation through ``add``, and the ``pending``/``approve``/``deny``/``watch`` commands."""
