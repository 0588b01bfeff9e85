"""The resource library on disk: the SQLite catalogue of lessons and the library folder (one directory per
lesson: media, poster, chapters)."""
