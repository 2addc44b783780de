from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import pytest

from esdb import RetryPolicy
from esdb_server import EsdbServer, server_binary

ServerFactory = Callable[..., EsdbServer]

#: Quicker reconnects than the defaults, so failure tests stay short.
FAST_RETRY = RetryPolicy(base_delay_s=0.05, max_delay_s=1.0, max_retries=10)


@pytest.fixture(scope="session")
def esdb_bin() -> Path:
    return server_binary()


@pytest.fixture
def server_factory(esdb_bin: Path, tmp_path: Path) -> Iterator[ServerFactory]:
    started: List[EsdbServer] = []
    numbers = itertools.count()

    def start(extra_args: Sequence[str] = (), data_dir: Optional[Path] = None) -> EsdbServer:
        directory = data_dir if data_dir is not None else tmp_path / f"data-{next(numbers)}"
        server = EsdbServer(esdb_bin, directory, extra_args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill9()


@pytest.fixture
def server(server_factory: ServerFactory) -> EsdbServer:
    return server_factory()
