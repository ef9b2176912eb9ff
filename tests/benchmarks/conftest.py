import pytest


@pytest.fixture
def refuse_training(monkeypatch):
    """``refuse_training(bench)``: any training a test did not expect fails
    it; returns the list of the commands it was asked to run."""

    def patch(bench):
        calls = []

        def train(cmd, *args, **kwargs):
            calls.append(cmd)
            raise RuntimeError('trained')

        monkeypatch.setattr(bench, 'train_with_progress', train)
        return calls

    return patch
