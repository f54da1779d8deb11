"""Typed engine errors.

Every failure the engine reports to a caller is one of these classes, so that
the worker, the REST API and the CLI can turn it into the right answer (an HTTP
status as Docker's API uses it, a one-line CLI message) without parsing text.
The message always says *what* went wrong and *where* (which image, container,
file or instruction), because it is shown to a person as it is.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class: an error the engine explains to its user."""

    #: The HTTP status the Docker Engine API uses for this kind of error.
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(EngineError):
    """The caller asked for something malformed (a bad limit, reference, option)."""

    status = 400


class NotFound(EngineError):
    """No such container, image, volume, network or exec instance."""

    status = 404


class ImageNotFound(NotFound):
    """The image reference resolves to nothing in the local store."""


class Conflict(EngineError):
    """The request clashes with the current state (a name in use, a running container)."""

    status = 409


class NotModified(EngineError):
    """The object is already in the requested state (Docker answers 304)."""

    status = 304


class Forbidden(EngineError):
    """The engine refuses on principle (e.g. a path escaping its root)."""

    status = 403


class CommandNotFound(InvalidArgument):
    """The container's command does not exist in the image (Docker: exit 127)."""

    status = 400


class RuntimeFailure(EngineError):
    """The OCI runtime or the kernel refused an operation."""

    status = 500


class RegistryError(EngineError):
    """A registry answered with an error, or with something malformed."""

    status = 500


class Unauthorized(RegistryError):
    """The registry refused our credentials (or we had none)."""

    status = 401


class LayerRejected(InvalidArgument):
    """A layer tarball holds an entry that would escape or break its directory."""


class BuildError(EngineError):
    """A Dockerfile build failed: bad syntax, a failing RUN, a missing source."""

    status = 400
