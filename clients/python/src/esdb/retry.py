"""Which server to connect to next and how long to wait first: round-robin over the addresses,
exponential backoff with jitter once every address of a round has failed. Pure: the clients
do the sleeping and the connecting."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

#: The protocol's default port.
DEFAULT_PORT = 4350

#: Most server addresses a client learns from greetings (``INFO`` ``cluster.client_urls``), so
#: a hostile or misconfigured server cannot grow a client's list without bound.
MAX_LEARNED_ADDRESSES = 64

Address = Tuple[str, int]
#: ``"host:port"``, ``"host"`` (default port), ``("host", port)``, a comma-separated list of
#: them in one string, or a sequence of them.
AddressesLike = Union[str, Address, Sequence[Union[str, Address]]]


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnect and retry timing. A retry waits about ``base_delay_s * 2**(retry - 1)``, at most
    ``max_delay_s``, with jitter (between half the delay and the whole of it)."""

    base_delay_s: float = 0.1
    max_delay_s: float = 30.0
    #: Connection attempts after the first before giving up; also how many times one request is
    #: sent again after a lost connection or a retryable error.
    max_retries: int = 10

    def delay_s(self, retry: int, rng: Optional[random.Random] = None) -> float:
        """How long to wait before retry number ``retry`` (1 for the first retry)."""
        if retry <= 0:
            return 0.0
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(retry - 1, 62))
        uniform = rng.uniform if rng is not None else random.uniform
        return ceiling / 2 + uniform(0.0, ceiling / 2)


def parse_address(address: Union[str, Address]) -> Address:
    """``"host:port"``, ``"[v6]:port"``, ``"host"`` or ``(host, port)``."""
    if isinstance(address, tuple):
        host, port = address
        return str(host), int(port)
    text = address.strip()
    if not text:
        raise ValueError("empty server address")
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ValueError(f"bad server address {address!r}")
        host, rest = text[1:end], text[end + 1 :]
        port = int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
        return host, port
    if text.count(":") == 1:
        host, port_text = text.split(":")
        return host, int(port_text)
    return text, DEFAULT_PORT


def parse_addresses(addresses: AddressesLike) -> List[Address]:
    if isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int):
        return [parse_address(addresses)]  # one (host, port)
    if isinstance(addresses, str):
        items: Sequence[Union[str, Address]] = [a for a in addresses.split(",") if a.strip()]
    else:
        items = addresses
    parsed = [parse_address(item) for item in items]
    if not parsed:
        raise ValueError("at least one server address is needed")
    return parsed


class ConnectPlan:
    """The connection attempts of one client: round-robin over its addresses; after a failed
    attempt the next address is tried at once unless every address failed in this round, in
    which case it backs off. Gives up after ``max_retries`` failed attempts in a row."""

    def __init__(self, addresses: Sequence[Address], policy: RetryPolicy) -> None:
        self.addresses = list(addresses)
        self._given = len(self.addresses)
        self.policy = policy
        self._next_index = 0
        self.failures = 0
        self.last_error: Optional[BaseException] = None

    def next_attempt(self) -> Optional[Tuple[Address, float]]:
        """The next address and the delay before trying it, or ``None`` to give up."""
        if self.failures > self.policy.max_retries:
            return None
        address = self.addresses[self._next_index % len(self.addresses)]
        self._next_index += 1
        if self.failures == 0 or self.failures % len(self.addresses) != 0:
            return address, 0.0
        return address, self.policy.delay_s(self.failures // len(self.addresses))

    def learn(self, urls: Sequence[str]) -> None:
        """Adds the cluster's client addresses a greeting named (after the given ones, which
        keep their order); unparsable ones and those past ``MAX_LEARNED_ADDRESSES`` are
        ignored."""
        for url in urls:
            try:
                address = parse_address(url)
            except ValueError:
                continue
            if address in self.addresses:
                continue
            if len(self.addresses) - self._given >= MAX_LEARNED_ADDRESSES:
                return
            self.addresses.append(address)

    def failed(self, error: Optional[BaseException]) -> None:
        self.failures += 1
        self.last_error = error

    def succeeded(self) -> None:
        self.failures = 0
        self.last_error = None

    def reset(self) -> None:
        self.failures = 0
