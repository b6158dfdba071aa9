"""Who may open a session, how many, how fast: the server-wide counters behind each connection's gate.

- Global sessions are counted per connection, from accept to close; a full server refuses new connections
  (HTTP 503 on the WebSocket upgrade, as the sherpa-onnx streaming server does, or ERROR 4503).
- A connection authenticates with ``Authorization: Bearer`` on the upgrade/POST, or with the token in its
  HELLO. A wrong header token is refused at once (401); without a header the HELLO must carry a known token.
- A connection without a header token holds no session slot until its HELLO names a known token: it waits in
  the pre-auth pool (at most ``max_preauth`` connections, 503/4503 beyond; the HELLO deadline ends it), so a
  flood of unauthenticated connections cannot take the slots of clients with tokens.
- Per token: at most ``max_sessions_per_token`` open sessions (4430) and ``rate`` messages per second with
  bursts of ``burst`` (4429).
Without auth (``--insecure-no-auth``) there are no tokens, so only the global limit applies.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from toolkit.serve import protocol as p
from toolkit.serve.auth import RateLimiter, TokenStore
from toolkit.serve.protocol import ProtocolError
from toolkit.serve.session import Gate


@dataclass(frozen=True)
class AdmissionLimits:
    max_sessions: int = 256
    max_sessions_per_token: int = 32
    rate_per_token: float = 50.0    # messages per second (a real-time phone sends 0.5 chunks/s)
    burst_per_token: float = 100.0
    max_preauth: int = 32           # connections waiting for a HELLO token (no header token)


class Admission:
    def __init__(self, tokens: TokenStore | None, limits: AdmissionLimits):
        self.tokens = tokens  # None: auth disabled
        self.limits = limits
        self.open_sessions = 0
        self.preauth = 0
        self.per_token: Counter[str] = Counter()
        self.rate = RateLimiter(limits.rate_per_token, limits.burst_per_token)

    @property
    def full(self) -> bool:
        return self.open_sessions >= self.limits.max_sessions

    def connect(self, header_token: str | None) -> "ConnectionGate":
        """Admit one connection or raise: server_busy, unauthorized, token_busy. A connection with a header token
        (or any, without auth) is a session at once; one without waits in the pre-auth pool until its HELLO.
        The returned gate must be closed when the connection ends."""
        if self.tokens is not None and header_token is None:
            if self.preauth >= self.limits.max_preauth:
                raise ProtocolError("server_busy", f"server busy: {self.preauth} connections wait for their HELLO "
                                                   f"token (--max-preauth {self.limits.max_preauth}); send "
                                                   f"Authorization: Bearer")
            self.preauth += 1
            return ConnectionGate(self, None, preauth=True)
        self._take_session_slot()
        token_id = None
        if self.tokens is not None:
            token_id = self._identify(header_token)
            self._take_token_slot(token_id)
        self.open_sessions += 1
        return ConnectionGate(self, token_id)

    def _take_session_slot(self) -> None:
        if self.full:
            raise ProtocolError("server_busy", f"server busy: {self.open_sessions} sessions open "
                                               f"(--max-sessions {self.limits.max_sessions})")

    def _identify(self, token: str) -> str:
        token_id = self.tokens.identify(token)
        if token_id is None:
            raise ProtocolError("unauthorized", "unknown bearer token")
        return token_id

    def _take_token_slot(self, token_id: str) -> None:
        if self.per_token[token_id] >= self.limits.max_sessions_per_token:
            raise ProtocolError("token_busy", f"token {token_id} has {self.per_token[token_id]} open sessions "
                                              f"(--max-sessions-per-token {self.limits.max_sessions_per_token})")
        self.per_token[token_id] += 1

    def _release(self, token_id: str | None, preauth: bool) -> None:
        if preauth:
            self.preauth -= 1
            return
        self.open_sessions -= 1
        if token_id is not None:
            self.per_token[token_id] -= 1
            if self.per_token[token_id] <= 0:
                del self.per_token[token_id]


class ConnectionGate(Gate):
    def __init__(self, admission: Admission, token_id: str | None, preauth: bool = False):
        self.admission = admission
        self.token_id = token_id
        self.preauth = preauth  # in the pre-auth pool: no session slot until the HELLO's token is known
        self.closed = False

    @property
    def auth_required(self) -> bool:
        return self.admission.tokens is not None

    def admit_hello(self, hello: p.Hello) -> None:
        if not self.auth_required or self.token_id is not None:
            return
        if not hello.token:
            raise ProtocolError("unauthorized", "no bearer token (send Authorization: Bearer, or the token in HELLO)")
        a = self.admission
        token_id = a._identify(hello.token)
        a._take_session_slot()
        a._take_token_slot(token_id)
        a.preauth -= 1
        a.open_sessions += 1
        self.token_id, self.preauth = token_id, False

    def admit_message(self) -> None:
        if self.token_id is not None and not self.admission.rate.allow(self.token_id):
            raise ProtocolError("rate_limited", f"token {self.token_id} exceeds {self.admission.limits.rate_per_token:g} "
                                                f"messages/s")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.admission._release(self.token_id, self.preauth)
