"""The lessons: titles, explanations and teacher-mode steps, in gettext.

Written from the course notes the project grew from (shared/seeds): images as
read-only templates made of layers, the union filesystem, containers as
isolated processes built on namespaces and cgroups, the VM/container
contrast, and Docker's client -> REST API -> daemon -> registry architecture.
The English text is the msgid; locale/es holds the Spanish.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Lesson:
    slug: str
    number: int
    title: str
    summary: str
    steps: tuple[str, ...]  # one idea per screen in teacher mode
    needs: str  # "container", "image" or ""


LESSONS = (
    Lesson(
        "layers", 1, _("Image layers"),
        _("An image is a read-only template made of layers. Each instruction of a Dockerfile "
          "creates one layer: the files it added, changed or removed."),
        (
            _("An image is a read-only template with the instructions to create a container."),
            _("Each instruction in a Dockerfile creates a layer in the image."),
            _("A layer only holds what changed: files added, files changed, and files removed "
              "(marked by a whiteout)."),
            _("A file changed or removed by a later layer still takes space in the layer below: "
              "that is wasted space."),
            _("Efficiency is the share of all the bytes in the layers that is still visible at "
              "the top of the stack."),
        ),
        "image",
    ),
    Lesson(
        "union", 2, _("Union filesystem"),
        _("A union filesystem stacks several directories, called branches, so that their "
          "contents look combined while they stay physically separate."),
        (
            _("The image's layers are the lower directories: read-only, shared by every "
              "container made from the image."),
            _("Each container gets one writable upper directory of its own."),
            _("The merged view is what the container sees: for each name, the topmost layer "
              "that has it wins."),
            _("Writing to a file from a lower layer first copies it up into the upper "
              "directory."),
            _("Deleting a file from a lower layer leaves a whiteout in the upper directory "
              "that hides it."),
            _("When the container is removed, its upper directory goes with it: the image "
              "never changes."),
        ),
        "container",
    ),
    Lesson(
        "namespaces", 3, _("Namespaces"),
        _("Containers are processes isolated from all the other processes of the host. They "
          "use the kernel's namespaces: each kind gives the process its own copy of one part "
          "of the system."),
        (
            _("A container is a process on the host's kernel, not a machine."),
            _("Each namespace is a kernel object with an inode number: equal numbers mean a "
              "shared namespace, different numbers an isolated one."),
            _("In its own PID namespace the container's first process is PID 1, and the host "
              "knows it by another number."),
            _("The UTS namespace gives the container its own host name."),
            _("The network namespace gives it its own interfaces: a veth pair is the cable to "
              "a bridge on the host."),
            _("The mount namespace gives it its own list of mounts, starting at its own root."),
        ),
        "container",
    ),
    Lesson(
        "cgroups", 4, _("Control groups"),
        _("Control groups (cgroups) count and limit the resources of a group of processes: "
          "CPU, memory, number of processes."),
        (
            _("Namespaces decide what a container sees; cgroups decide how much it may use."),
            _("The kernel counts the memory, CPU time and processes of every container."),
            _("When a container crosses its memory limit, the kernel's OOM killer stops a "
              "process inside it; the host is not affected."),
        ),
        "container",
    ),
    Lesson(
        "vm", 5, _("VM vs container"),
        _("Virtual machines virtualize a whole machine down to the hardware; containers only "
          "virtualize the software layers above the operating system and share the host's "
          "kernel."),
        (
            _("A virtual machine emulates hardware, and boots its own kernel on it."),
            _("A container has no kernel inside: it shares the host's kernel with the other "
              "containers."),
            _("That is why a container starts in milliseconds and a VM in seconds."),
            _("And why a container image is measured in megabytes, a VM disk in gigabytes."),
        ),
        "",
    ),
    Lesson(
        "architecture", 6, _("Architecture in motion"),
        _("Docker uses a client-server architecture: the client talks to the daemon through "
          "a REST API; the daemon builds, runs and distributes containers and pulls images "
          "from a registry."),
        (
            _("The client (a browser, the estiba CLI, the docker CLI) sends every command as "
              "a request to the REST API."),
            _("The daemon does the heavy work: it manages images, containers, networks and "
              "volumes."),
            _("A registry stores images: pull brings them down, push sends them up."),
            _("Each request lights its path on the diagram as it happens."),
        ),
        "",
    ),
    Lesson(
        "build", 7, _("From Dockerfile to layers"),
        _("To create your own image you write a Dockerfile; each of its instructions creates "
          "a layer, and a rebuild only rebuilds the layers that changed."),
        (
            _("A Dockerfile is a list of instructions, run in order."),
            _("Each instruction that changes files becomes a new layer on the stack."),
            _("An instruction that did not change reuses the layer from the cache."),
        ),
        "",
    ),
)

BY_SLUG = {lesson.slug: lesson for lesson in LESSONS}
