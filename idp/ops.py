"""Operations: health, readiness, metrics, logs, proxies (being built)."""


def init_app(app, settings):
    pass
