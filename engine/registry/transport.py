"""HTTP to one registry: scheme choice, the auth dance, and distrust of answers.

Every request goes through :meth:`RegistrySession.request`, which

* talks plain HTTP only to registries marked insecure (``localhost`` and
  ``127.0.0.1`` by default, Docker's rule), HTTPS to every other;
* on a 401 reads the ``WWW-Authenticate`` challenge, gets a bearer token for
  the requested scope (or uses basic auth) and retries once;
* turns transport failures and error answers into :class:`RegistryError`
  naming the registry and what was asked, with the registry's own error code
  (``MANIFEST_UNKNOWN``, ``BLOB_UNKNOWN``...) when it sent one.

Bodies of JSON answers are read with a size cap: a registry is a stranger on
the network, and a 10 GB "manifest" must not exhaust memory.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlencode, urlparse

import requests

from engine.errors import RegistryError, Unauthorized
from engine.registry.auth import Challenge, Credentials, parse_challenges

USER_AGENT = "estiba/0.1 (+containers for the classroom)"
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120


def is_insecure(registry: str, insecure: tuple[str, ...] | list[str]) -> bool:
    """True if ``registry`` (host[:port]) is one we may reach over plain HTTP."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    host = host.strip("[]")
    return registry in insecure or host in insecure


class RegistrySession:
    """One registry host, with cached tokens per scope."""

    def __init__(self, registry: str, *, insecure: bool, credentials: Credentials | None = None
                 ) -> None:
        self.registry = registry
        self.scheme = "http" if insecure else "https"
        self.insecure = insecure
        self.base = f"{self.scheme}://{registry}"
        self.credentials = credentials or Credentials()
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=16)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        #: scope -> (token, monotonic time after which it is not used again)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ auth
    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            cached = self._tokens.get(scope)
            if cached is not None and time.monotonic() >= cached[1]:
                del self._tokens[scope]  # expired: the next 401 fetches a fresh one
                cached = None
            basic = self._basic
        if cached is not None:
            return {"Authorization": f"Bearer {cached[0]}"}
        if basic and self.credentials:
            import base64

            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def _answer_challenge(self, response: requests.Response, scope: str, what: str) -> None:
        challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            token, lifetime = self._fetch_token(bearer, scope, what)
            with self._lock:
                # A little early, so a token never expires in flight.
                self._tokens[scope] = (token, time.monotonic() + max(lifetime - 10, lifetime / 2))
            return
        if basic is not None:
            if not self.credentials:
                raise Unauthorized(f"{self.registry}: {what}: authentication required "
                                   "(the registry asks for a user name and password)")
            with self._lock:
                if self._basic:
                    raise Unauthorized(f"{self.registry}: {what}: the registry refused the "
                                       f"credentials of user {self.credentials.username!r}")
                self._basic = True
            return
        raise Unauthorized(f"{self.registry}: {what}: unauthorized, and the registry sent no "
                           "usable WWW-Authenticate challenge")

    def _fetch_token(self, challenge: Challenge, scope: str, what: str) -> tuple[str, float]:
        """A token for ``scope`` (space-separated scopes) and its lifetime in seconds."""
        realm = challenge.realm
        parsed = urlparse(realm)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise RegistryError(f"{self.registry}: {what}: bad token realm {realm!r}")
        if parsed.scheme == "http" and not self.insecure:
            raise RegistryError(f"{self.registry}: {what}: refusing to send credentials to a "
                                f"plain-HTTP token service ({parsed.netloc})")
        # One ``scope`` parameter per scope, as the token spec (and Docker) does.
        query = [("service", challenge.params.get("service", ""))]
        query += [("scope", s) for s in scope.split()]
        auth = None
        if self.credentials.identity_token:
            data = {"grant_type": "refresh_token", "refresh_token": self.credentials.identity_token,
                    "service": query[0][1], "scope": scope, "client_id": "estiba"}
            try:
                r = self.http.post(realm, data=data, timeout=(CONNECT_TIMEOUT, 30))
            except requests.RequestException as err:
                raise RegistryError(f"{self.registry}: token service unreachable: "
                                    f"{type(err).__name__}") from None
        else:
            if self.credentials:
                auth = (self.credentials.username, self.credentials.password)
            try:
                r = self.http.get(realm + ("&" if "?" in realm else "?") + urlencode(query),
                                  auth=auth, timeout=(CONNECT_TIMEOUT, 30))
            except requests.RequestException as err:
                raise RegistryError(f"{self.registry}: token service unreachable: "
                                    f"{type(err).__name__}") from None
        if r.status_code in (401, 403):
            who = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
            raise Unauthorized(f"{self.registry}: {what}: the token service refused {who}")
        if r.status_code != 200:
            raise RegistryError(f"{self.registry}: {what}: token service answered HTTP "
                                f"{r.status_code}")
        body = _json_capped(r, 64 * 1024, f"{self.registry}: token answer")
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.registry}: {what}: the token service sent no token")
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = 60  # the token spec's default
        return token, float(min(lifetime, 24 * 3600))

    # ------------------------------------------------------------------ requests
    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            parsed = urlparse(path)
            if parsed.netloc != self.registry:
                # Upload locations must stay on this registry (no open redirect of our auth).
                raise RegistryError(f"{self.registry}: the registry pointed us to another host "
                                    f"({parsed.netloc})")
            return path
        return self.base + path

    def request(self, method: str, path: str, *, scope: str, what: str,
                ok: tuple[int, ...] = (200,), stream: bool = False,
                headers: dict[str, str] | None = None, data=None, params=None,
                allow_redirects: bool = True, retries: int = 2) -> requests.Response:
        """Send one request (re-sent once after an auth challenge); raise on unexpected status."""
        url = self.url(path)
        for attempt in range(3):
            h = dict(headers or {})
            h.update(self._auth_header(scope))
            if attempt and hasattr(data, "seek"):
                data.seek(0)  # a file-like body was consumed by the refused attempt
            try:
                response = self.http.request(method, url, headers=h, data=data, params=params,
                                             stream=stream, allow_redirects=allow_redirects,
                                             timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            except requests.exceptions.SSLError:
                raise RegistryError(f"{self.registry}: {what}: TLS failed (if this registry "
                                    "speaks plain HTTP, mark it insecure)") from None
            except requests.RequestException as err:
                if retries > 0 and method in ("GET", "HEAD") and attempt < retries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise RegistryError(f"{self.registry}: {what}: cannot reach the registry "
                                    f"({type(err).__name__})") from None
            if response.status_code == 401:
                response.close()
                if attempt == 0:
                    self._answer_challenge(response, scope, what)
                    continue
                raise self._refused(response, what)
            if response.status_code in ok:
                return response
            raise self._error(response, what)
        raise RegistryError(f"{self.registry}: {what}: giving up after repeated failures")

    def _refused(self, response: requests.Response, what: str) -> Unauthorized:
        """The 401 that followed our answer to a challenge, in words a user can act on."""
        challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        denied = bearer.params.get("scope", "") if bearer is not None else ""
        if not self.credentials:
            return Unauthorized(f"{self.registry}: {what}: authentication required (anonymous "
                                "access refused" + (f" for {denied}" if denied else "")
                                + "; log in first)")
        return Unauthorized(f"{self.registry}: {what}: the registry refused the credentials of "
                            f"user {self.credentials.username!r}"
                            + (f" (no access granted for {denied})" if denied else ""))

    def _error(self, response: requests.Response, what: str) -> Exception:
        status = response.status_code
        detail = ""
        try:
            body = _json_capped(response, 64 * 1024, "error body")
            errors = body.get("errors") if isinstance(body, dict) else None
            if errors and isinstance(errors, list) and isinstance(errors[0], dict):
                detail = f"{errors[0].get('code', '')}: {errors[0].get('message', '')}"
        except RegistryError:
            pass
        finally:
            response.close()
        message = f"{self.registry}: {what}: HTTP {status}" + (f" ({detail})" if detail else "")
        if status in (401, 403):
            return Unauthorized(message)
        err = RegistryError(message)
        if status == 404:
            err.status = 404
        return err


def _json_capped(response: requests.Response, limit: int, what: str):
    """Read a JSON body of at most ``limit`` bytes."""
    data = read_capped(response, limit, what)
    try:
        return json.loads(data)
    except ValueError:
        raise RegistryError(f"{what}: not JSON") from None


def read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        response.close()
        raise RegistryError(f"{what}: {declared} bytes is larger than the {limit}-byte limit")
    chunks = []
    total = 0
    for chunk in response.iter_content(65536):
        total += len(chunk)
        if total > limit:
            response.close()
            raise RegistryError(f"{what}: larger than the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
