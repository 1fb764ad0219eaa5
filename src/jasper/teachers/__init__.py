"""Teacher backends: anything that turns a list of texts into vectors."""

from jasper.teachers.base import Teacher, build_teacher

__all__ = ["Teacher", "build_teacher"]
