import importlib


def test_packages_import() -> None:
    for name in ("streamer_core", "streamer_handlers", "streamer_infra", "streamer_client"):
        assert importlib.import_module(name).__name__ == name
