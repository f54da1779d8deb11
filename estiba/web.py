"""Small helpers the apps' views share: engine errors as messages, partial responses."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from engine import errors

log = logging.getLogger("estiba.web")


def is_partial(request: HttpRequest) -> bool:
    """An htmx-style request for a fragment rather than a whole page."""
    return request.headers.get("HX-Request") == "true" or request.GET.get("partial") == "1"


def back(request: HttpRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/") and not target.startswith("//"):
        return redirect(target)
    return redirect(fallback)


def engine_errors(fallback: str) -> Callable:
    """Turn an engine error or a refusal into a message on the page, never a stack trace."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except errors.EngineError as exc:
                if is_partial(request):
                    return HttpResponse(str(exc), status=exc.status if exc.status >= 400 else 409,
                                        content_type="text/plain; charset=utf-8")
                messages.error(request, str(exc))
                return back(request, fallback)

        return wrapper

    return decorate
