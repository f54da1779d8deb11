"""Dockerfiles the build lesson offers to start from (the page lets a teacher edit them)."""

from __future__ import annotations

SAMPLE_DOCKERFILES = {
    "hello": (
        "FROM busybox:latest\n"
        "RUN mkdir -p /app && echo 'hola' > /app/hello.txt\n"
        "ENV GREETING=hola\n"
        "COPY Dockerfile /app/Dockerfile\n"
        "RUN echo \"$GREETING, estiba\" >> /app/hello.txt\n"
        "RUN rm /app/Dockerfile\n"
        "CMD [\"cat\", \"/app/hello.txt\"]\n"
    ),
}
