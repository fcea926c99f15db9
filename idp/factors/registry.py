"""The factor registry (being built)."""


def init_app(app, settings):
    pass
