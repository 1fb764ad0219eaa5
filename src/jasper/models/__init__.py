"""The student: a Hugging Face encoder, mean pooling, linear heads."""

from jasper.models.student import Student, build_student, load_student

__all__ = ["Student", "build_student", "load_student"]
