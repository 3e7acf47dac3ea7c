"""JWT verification and the identity a session acts as.

Keys are fixed by configuration, and each key allows exactly the algorithms of its type:
an HMAC secret only HS256, an RSA key only RS256, an EC key only ES256. ``none`` is never
accepted, and a public key can never be used as an HMAC secret (HS/RS confusion), because
the algorithm list is chosen from the key, never from the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from frys.gateway.config import GatewayConfig
from frys.shared.protocol.errors import ChannelError, FrysError
from frys.shared.protocol.grants import Grants

CLAIM = "frys"
"""Namespaced claim holding ``kind`` and ``grants``."""

KINDS = frozenset({"user", "agent", "service"})
TOKEN_CACHE_SIZE = 8192


class AuthError(FrysError):
    """A token was refused; ``reason`` says why (safe to show to the client)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session is and what it may do, from a verified token."""

    sub: str
    kind: str
    grants: Grants
    exp: int | None


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithms: tuple[str, ...]


def _load_public_key(pem: bytes) -> _Key:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem)
    if isinstance(key, rsa.RSAPublicKey):
        return _Key(key, ("RS256",))
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs an EC key on P-256")
        return _Key(key, ("ES256",))
    raise ValueError("public key must be RSA or EC P-256")


def _load_jwks(text: str, lenient: bool = False) -> dict[str, _Key]:
    """Keys by id from a JWKS document. A file the operator wrote must be entirely usable;
    an identity provider's published set (``lenient``) may also hold keys Frys has no use
    for (encryption keys, other curves, other key types), which are skipped."""
    keys: dict[str, _Key] = {}
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("keys", []), list):
        raise ValueError("a JWKS is an object with a list of keys")
    for jwk in document.get("keys", []):
        try:
            if not isinstance(jwk, dict):
                raise ValueError("a JWKS key is an object")
            kid = jwk.get("kid")
            if not kid or not isinstance(kid, str):
                raise ValueError("every JWKS key needs a kid")
            if jwk.get("use", "sig") != "sig":
                raise ValueError(f"key {kid}: not a signing key")
            keys[kid] = _jwk_key(kid, jwk)
        except (ValueError, KeyError, TypeError, jwt.PyJWTError):
            if not lenient:
                raise
    return keys


def _jwk_key(kid: str, jwk: dict[str, Any]) -> _Key:
    kty = jwk.get("kty")
    if kty == "RSA":
        return _Key(RSAAlgorithm.from_jwk(jwk), ("RS256",))
    if kty == "EC":
        if jwk.get("crv") != "P-256":
            raise ValueError(f"key {kid}: ES256 needs the P-256 curve")
        return _Key(ECAlgorithm.from_jwk(jwk), ("ES256",))
    if kty == "oct":
        secret = base64.urlsafe_b64decode(jwk["k"] + "=" * (-len(jwk["k"]) % 4))
        return _Key(secret, ("HS256",))
    raise ValueError(f"unsupported key type {kty!r}")


class TokenVerifier:
    """Verifies tokens against the configured keys and builds the session's identity."""

    def __init__(self, config: GatewayConfig):
        self._issuer = config.jwt_issuer or None
        self._audience = config.jwt_audience or None
        self._leeway = config.jwt_leeway_s
        self._by_kid: dict[str, _Key] = {}
        self._remote: dict[str, _Key] = {}
        """Keys of ``jwt_jwks_url``, replaced as a whole by each fetch."""
        self.on_unknown_kid: Callable[[str], None] | None = None
        """Called (synchronously) with a key id no key has: asks for a refetch of the
        remote key set, which happens in the background."""
        self._default: _Key | None = None
        self._cache: dict[str, Identity] = {}
        if config.jwt_jwks_file:
            self._by_kid.update(_load_jwks(Path(config.jwt_jwks_file).read_text()))
        if config.jwt_public_key_file:
            key = _load_public_key(Path(config.jwt_public_key_file).read_bytes())
            self._register(config.jwt_key_id, key)
        if config.jwt_secret:
            self._register(config.jwt_key_id, _Key(config.jwt_secret.encode(), ("HS256",)))

    def set_remote_keys(self, keys: Mapping[str, _Key]) -> None:
        """Replace the keys fetched from ``jwt_jwks_url``. Tokens verified before are
        forgotten when a key went away or changed, so a withdrawn key stops admitting
        anyone at once rather than when their tokens expire."""
        withdrawn = any(keys.get(kid) != key for kid, key in self._remote.items())
        self._remote = dict(keys)
        if withdrawn:
            self._cache.clear()

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id tokens may name now."""
        return frozenset(self._by_kid) | frozenset(self._remote)

    def _register(self, kid: str, key: _Key) -> None:
        if kid:
            self._by_kid[kid] = key
        else:
            self._default = key

    def _key_for(self, token: str) -> _Key:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        kid = header.get("kid")
        if kid is not None:
            found = self._by_kid.get(str(kid)) or self._remote.get(str(kid))
            if found is None:
                if self.on_unknown_kid is None:
                    raise AuthError("unknown key id")
                # Perhaps the provider rotated: the key set is fetched again (rate-limited),
                # and the same token verifies once the new key is in.
                self.on_unknown_kid(str(kid))
                raise AuthError("unknown key id (key set refresh requested; retry shortly)")
            return found
        if self._default is None:
            raise AuthError("token has no key id")
        return self._default

    def verify(self, token: str) -> Identity:
        """The identity of a valid token. A token verified before is answered from a cache
        (its signature cannot have changed) as long as it has not expired."""
        if not token:
            raise AuthError("token required")
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp is not None and cached.exp + self._leeway < time.time():
                del self._cache[token]
                raise AuthError("token expired")
            return cached
        identity = self._verify(token)
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = identity
        return identity

    def _verify(self, token: str) -> Identity:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("algorithm not allowed for this key") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing claim {exc.claim}") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        except (ValueError, TypeError, OverflowError, UnicodeError, RecursionError) as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        return identity_from_claims(claims)


_GRANTS_CACHE: dict[str, Grants] = {}


def _grants(claim: object) -> Grants:
    """Parsed grants, shared by every session whose token grants the same (tokens of one
    deployment repeat a handful of grant sets; each session need not hold its own)."""
    try:
        key = json.dumps(claim, sort_keys=True)
    except (TypeError, ValueError):
        return Grants.from_claim(claim)
    grants = _GRANTS_CACHE.get(key)
    if grants is None:
        grants = Grants.from_claim(claim)
        if len(_GRANTS_CACHE) >= 4096:
            _GRANTS_CACHE.pop(next(iter(_GRANTS_CACHE)))
        _GRANTS_CACHE[key] = grants
    return grants


MAX_EXP = 2**53
"""Latest ``exp`` taken (beyond any real expiry; larger values overflow timers)."""


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("sub must be a non-empty string")
    frys = claims.get(CLAIM) or {}
    if not isinstance(frys, Mapping):
        raise AuthError(f"{CLAIM} claim must be an object")
    kind = frys.get("kind", "user")
    if kind not in KINDS:
        raise AuthError(f"{CLAIM}.kind must be one of {', '.join(sorted(KINDS))}")
    try:
        grants = _grants(frys.get("grants"))
    except ChannelError as exc:
        raise AuthError(str(exc)) from None
    exp = claims.get("exp")
    if exp is not None and (
        isinstance(exp, bool)
        or not isinstance(exp, int | float)
        or not math.isfinite(exp)
        or not 0 <= exp <= MAX_EXP
    ):
        raise AuthError("exp must be a NumericDate (seconds since the epoch)")
    return Identity(
        sub=sub,
        kind=str(kind),
        grants=grants,
        exp=int(exp) if exp is not None else None,
    )


def mint_token(
    secret: str,
    sub: str,
    grants: Mapping[str, list[str]],
    *,
    ttl_s: float = 3600.0,
    kind: str = "user",
    issuer: str = "",
    audience: str = "",
    key_id: str = "",
    now: float | None = None,
) -> str:
    """An HS256 token for ``sub`` with ``grants`` ({pattern: [right, ...]})."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "sub": sub,
        "iat": issued,
        "exp": issued + int(ttl_s),
        CLAIM: {"kind": kind, "grants": {k: list(v) for k, v in grants.items()}},
    }
    if issuer:
        payload["iss"] = issuer
    if audience:
        payload["aud"] = audience
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


# --- resume tokens -------------------------------------------------------------------------


RESUME_MEMORY_SIZE = 100_000
"""Most used resume tokens a gateway remembers (see :class:`ResumeTokens`)."""


class ResumeTokens:
    """Signed resume tokens, each accepted once by a gateway.

    A resume token lets a reconnecting client keep its session id (so presence does not
    flap) for a bounded time; it grants nothing by itself, the client still authenticates.

    A token is ``{sid}.{exp}.{nonce}.{mac}``: the session id, its expiry (Unix seconds), a
    random nonce (so no two tokens are alike, even for one session within one second) and an
    HMAC over those three and the subject, keyed with the installation's shared secret.
    Checking it needs no shared state, so any gateway can accept it, for its subject only,
    until it expires.

    Each gateway also refuses a token it has already accepted, so that a copied token (a
    second device or tab of the same subject, a token read from a log) cannot give a second
    session the id of one that already resumed with it: it remembers the nonces of the
    tokens it accepted until they expire. The memory is bounded: pruned of expired
    entries on every check and capped at ``memory_size`` entries (the oldest forgotten
    first; the default holds the resumes of about 330 per second over a 5 minute lifetime,
    some 20 MB at most), so a gateway's memory cannot be grown without limit. Reuse on
    another gateway is not detected; what bounds it there is the binding to the subject
    and the expiry.
    """

    def __init__(self, secret: bytes, ttl_s: float = 300.0, memory_size: int = RESUME_MEMORY_SIZE):
        self._secret = secret
        self._ttl_s = ttl_s
        self._memory_size = memory_size
        self._used: OrderedDict[str, int] = OrderedDict()
        """Nonce → expiry of the tokens accepted here, in the order they were accepted."""

    def issue(self, sid: str, sub: str, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + self._ttl_s)
        body = f"{sid}.{exp}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body, sub)}"

    def check(self, token: str, sub: str, now: float | None = None) -> str | None:
        """The session id if ``token`` is valid for ``sub``, not expired and not used on this
        gateway before (it is then used), else ``None``."""
        parts = token.split(".")
        if len(parts) != 4 or not (parts[1].isascii() and parts[1].isdigit()):
            return None
        sid, exp, nonce, mac = parts
        expected = self._sign(f"{sid}.{exp}.{nonce}", sub)
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        at = time.time() if now is None else now
        if int(exp) < at:
            return None
        self._forget_expired(at)
        if nonce in self._used:
            return None
        self._used[nonce] = int(exp)
        if len(self._used) > self._memory_size:
            self._used.popitem(last=False)
        return sid

    @property
    def remembered(self) -> int:
        """How many used tokens this gateway remembers now."""
        return len(self._used)

    def _forget_expired(self, now: float) -> None:
        """Drop expired entries from the oldest on. Entries are in the order of use and each
        expires at most ``ttl_s`` after it was used, so none outlives its use by more."""
        used = self._used
        while used:
            nonce, exp = next(iter(used.items()))
            if exp >= now:
                break
            del used[nonce]

    def _sign(self, body: str, sub: str) -> str:
        digest = hmac.new(self._secret, f"{body}|{sub}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")
