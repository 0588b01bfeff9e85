"""Lesson recorder and resource library (WebM without transcoding). Built in a later issue."""
