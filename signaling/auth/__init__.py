"""Access tokens: HS256 JWTs with grants per role (teacher, terminal, student, admin, relay). Pure: no HTTP."""
