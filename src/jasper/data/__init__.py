"""Corpus reading and the teacher-vector store."""
